"""`python -m xdpfeed.multicast.cli ...`: the `xdpfeed` command without its console script."""

from xdpfeed.multicast.cli.main import cli

cli()
