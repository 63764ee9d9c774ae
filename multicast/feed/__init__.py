"""The live feed: lines A and B → sequencer (arbitration, hold queue, exactly once and in order) → book and
consumers, with recovery beside it (MoldUDP64 re-request, SoupBinTCP replay), the configuration, the
metrics and the feed's state."""
