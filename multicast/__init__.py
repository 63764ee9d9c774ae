"""The feed handler, in subpackages that follow the data's way: `wire` (frames, MoldUDP64, SoupBinTCP) →
`feed` (sequencer, recovery, the `Feed` that owns the pipeline, consumers, metrics) → `itch` (decoding)
→ `book` (order books); `ouch` is order entry, `exchange` the simulated venue, `cli` the command."""
