"""Files written whole or not at all."""

import os
import uuid
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def written_in_place(target: Path):
    """A temporary path beside `target` to write to: renamed onto `target` when the block ends, removed if it fails."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
