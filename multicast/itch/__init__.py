"""NASDAQ TotalView-ITCH 5.0: the schema (written once), the compiled decoder into per-type tables, the
reference decoder it is tested against, binary ITCH files, decoding whole inputs, and text output."""
