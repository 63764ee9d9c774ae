"""Outputs: sinks opened from URIs (`itch:FILE`, `dbn:FILE`, `parquet:DIR`, `ipc:NAME`), each a consumer of
the Feed, and the subscribers that read what a sink publishes to other processes (`Subscriber("ipc:NAME")`)."""
