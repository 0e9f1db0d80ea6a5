"""The errors whose message is a sentence for the user, and the one line that says how a piece of work ended.

Every error a user can cause or fix is a MaskdetError (a ValueError): pages show its message with st.error, the CLI
prints it as one line, a failed run records it. Anything else is a bug, shown with its type."""


class MaskdetError(ValueError):
    """A failure the user can act on; str(error) says what happened and what to do."""


class StoreError(MaskdetError):
    """A mistake against the dataset or the run registry: an unknown label, a bad name or file, a missing run."""


class TrainingError(MaskdetError):
    """A run that cannot start or go on: another run trains, too few photos, no room on the disk, the cluster is
    unreachable."""


class Cancelled(Exception):
    """Training was cancelled through should_cancel()."""


def error_line(error: BaseException) -> str:
    """The one line that tells a user how a command or a run ended with `error`: the sentence of a user's mistake
    (a MaskdetError, another ValueError, an OSError), else its type and message."""
    if isinstance(error, (ValueError, OSError)):
        return f"error: {error}"
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    if isinstance(error, Cancelled):
        return "training cancelled"
    return f"error: unexpected {type(error).__name__}: {error}"
