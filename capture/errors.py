"""Errors a source raises: each carries a one-line message fit to print as is."""


class SourceError(Exception):
    """A source could not be opened or read (missing file, unknown format, bad URI)."""


class CorruptInput(SourceError):
    """The input is damaged at `offset`; everything before it was delivered."""

    def __init__(self, message: str, offset: int):
        super().__init__(message)
        self.offset = offset
