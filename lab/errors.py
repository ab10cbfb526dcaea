"""The one family of errors the library raises; the CLI renders them."""


class LabError(Exception):
    """An error a user can act on: a one-line message plus an optional hint."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message
