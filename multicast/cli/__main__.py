"""`python -m xdpfeed.multicast.cli ...`: the `xdpfeed` command without its console script."""

import sys

from xdpfeed.multicast.cli.main import main

sys.exit(main())
