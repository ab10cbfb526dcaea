"""The one family of errors the library raises; the CLI renders them."""


class LabError(Exception):
    """An error a user can act on: a one-line message plus an optional hint."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class Interrupted(LabError):
    """Ctrl-C, once what it interrupted was stopped and removed, or had already finished:
    the message says which (the CLI exits 130)."""

    def __init__(self, message: str, hint: str = "", lab_is_up: str | None = None) -> None:
        super().__init__(message, hint)
        self.lab_is_up = lab_is_up  # the lab's name when it is up and was left running


def went_down(lab: str, node: str, what: str, *, whole_lab: bool) -> LabError:
    """Why a shell or command in a node ended without an exit status: the lab went down
    (``whole_lab``), or only the node did. One wording for every client."""
    if whole_lab:
        return LabError(f"lab {lab} went down; {what} in {node} has ended")
    return LabError(f"node {node} of lab {lab} went down; {what} has ended")
