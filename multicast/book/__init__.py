"""Full-depth order books built from ITCH 5.0: the compiled storage and application, the Python face
(`OrderBook`), the plain-Python reference book, and book reports."""
