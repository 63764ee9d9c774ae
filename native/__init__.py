"""C sources built by cffi and their build scripts."""
