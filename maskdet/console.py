"""What the command line shows while it works: tqdm progress bars, its stderr copied into a run's log, and the one line
(and exit code) a failed command ends with."""

import sys
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from maskdet.core.errors import Cancelled, error_line


def tqdm_progress(description: str, unit: str = "img"):
    """A (done, total) callback drawing a tqdm bar on stderr, opened on the first update, closed at the end."""
    bars = []

    def update(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(desc=description, total=total, unit=unit, file=sys.stderr, leave=False))
        bars[0].n = done
        bars[0].refresh()
        if done >= total:
            bars[0].close()

    return update


class Tee:
    """A text stream that writes to several others (the terminal's stderr and a run's log file)."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
            stream.flush()
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()

    def __getattr__(self, name):
        return getattr(self.streams[0], name)


@contextmanager
def stderr_logged(path: Path):
    """Copy what the command writes to stderr into `path` (a CLI run's log), ending with how the command ended."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as log:
        terminal, sys.stderr = sys.stderr, Tee(sys.stderr, log)
        try:
            yield
        except (Exception, KeyboardInterrupt) as error:
            print(failure(error)[0], file=log)
            raise
        finally:
            sys.stderr = terminal


@contextmanager
def stage_bars(stream=None):
    """A training Progress callback drawing a tqdm bar per stage (with validation loss and accuracy) on `stream`
    (default: stderr), the bars closed when the block ends."""
    stream = stream or sys.stderr
    bars: dict = {}

    def on_progress(progress) -> None:
        bar = bars.get(progress.stage)
        if bar is None:
            for old in bars.values():
                old.close()
            bars.clear()
            bar = bars[progress.stage] = tqdm(desc=progress.stage, total=progress.steps, file=stream, leave=False)
        bar.total = progress.steps
        bar.n = progress.step
        if progress.loss is not None:
            bar.set_postfix(loss=f"{progress.loss:.4f}", acc=f"{progress.accuracy:.3f}" if progress.accuracy else "-")
        bar.refresh()

    try:
        yield on_progress
    finally:
        for bar in bars.values():
            bar.close()


def failure(error: BaseException) -> tuple[str, int]:
    """The one line printed for a command that raised `error`, and its exit code."""
    codes = ((Cancelled, 3), (KeyboardInterrupt, 130), ((ValueError, OSError), 2))
    return error_line(error), next((code for kind, code in codes if isinstance(error, kind)), 1)
