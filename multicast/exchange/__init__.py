"""The simulated venue: an ITCH day published as MoldUDP64 on lines A and B with faults, and the
recovery servers a real venue offers (SoupBinTCP replay, MoldUDP64 re-request). A real component over
real sockets, used by `xdpfeed simulate`, `xdpfeed demo` and the tests; and the synthetic ITCH days it
publishes."""
