"""Time and text helpers shared by every layer."""

from datetime import datetime, timezone


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def printable(text: str) -> str:
    """A file name as text: bytes that are not UTF-8 (kept by the OS as surrogates) become the replacement
    character, so the name can be shown and stored."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def plural(count: int, word: str) -> str:
    """'1 photo', '2 photos'."""
    return f"{count} {word}{'' if count == 1 else 's'}"
