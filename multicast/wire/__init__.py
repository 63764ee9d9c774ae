"""What travels on the wire and how it is framed: Ethernet/IPv4/UDP frames, MoldUDP64 packets, SoupBinTCP
packets and the client half of a SoupBinTCP session, closing TCP connections so the peer reads everything,
and the counters every frame and message ends in."""
