"""Comparing two delivered streams (`xdpfeed compare A B`): loading each side, aligning and reporting."""
