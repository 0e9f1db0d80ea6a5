"""The errors whose message is meant for the user, and the one line that says how a piece of work ended."""



class Cancelled(Exception):
    """Training was cancelled through should_cancel()."""


def error_line(error: BaseException) -> str:
    """The one line that tells a user how a command or a run ended with `error`: the sentence of a user's mistake
    (ValueError, OSError: StoreError, BadImage, NotAMaskdetModel, ...), else its type and message."""
    if isinstance(error, (ValueError, OSError)):
        return f"error: {error}"
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    if isinstance(error, Cancelled):
        return "training cancelled"
    return f"error: unexpected {type(error).__name__}: {error}"


class StoreError(ValueError):
    """A user mistake against the store (unknown label, bad name, ...); str(error) says what to do."""
