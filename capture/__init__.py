"""Packet sources that hand out batches of frames (FrameBatch)."""
