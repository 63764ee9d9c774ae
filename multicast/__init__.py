"""The feed handler: frames, MoldUDP64, ITCH decoding, CLI."""
