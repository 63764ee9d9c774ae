"""The `xdpfeed` command: `main` builds the parser and dispatches; one module per subcommand."""
