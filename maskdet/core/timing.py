"""How fast a model ran, as measured: the median of repeated rounds on the same faces with the range of those rounds,
whether other work was using the machine meanwhile, and when two such figures differ by more than measurement noise."""

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

BUSY_SHARE = 0.25  # other processes using more than this share of the machine's CPU while models are timed: "busy"


@dataclass(frozen=True)
class Timing:
    """Milliseconds per face of one model file at one batch size: the median of its timed rounds and their range
    (fastest to slowest round). An older run's figure was a single number: one round, no range, busy unknown."""

    median: float
    low: float
    high: float
    rounds: int = 1
    busy: bool | None = None  # other work used the machine while it was timed (None: not known)

    @classmethod
    def of_rounds(cls, milliseconds: list[float], busy: bool | None) -> "Timing":
        return cls(float(statistics.median(milliseconds)), float(min(milliseconds)), float(max(milliseconds)),
                   len(milliseconds), busy)

    @classmethod
    def read(cls, value) -> "Timing | None":
        """A timing as a run's metrics keep it: the dict of to_dict(), or an older run's single number."""
        if isinstance(value, dict):
            try:
                return cls(float(value["median"]), float(value["low"]), float(value["high"]), int(value["rounds"]),
                           value.get("busy"))
            except (KeyError, TypeError, ValueError):
                return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return cls(float(value), float(value), float(value))
        return None

    @classmethod
    def of_model(cls, figures: dict, batch: int = 1) -> "Timing | None":
        """A model file's timing at batch 1 or 32 from its part of a run's metrics ("onnx" or "int8"): the measured
        rounds where the run kept them, else the single figure older runs kept."""
        return (cls.read((figures.get("timing") or {}).get(f"batch{batch}"))
                or cls.read(figures.get(f"ms_per_image_batch{batch}")))

    def to_dict(self) -> dict:
        return {"median": self.median, "low": self.low, "high": self.high, "rounds": self.rounds, "busy": self.busy}

    @property
    def has_range(self) -> bool:
        """Measured in several rounds, so its range says how much it varied (an older run's figure did not)."""
        return self.rounds > 1

    def text(self) -> str:
        """'2.3 ms per face (2.1–2.6, median of 7)', with ', measured while busy' when other work used the machine;
        an older run's single figure says it is one."""
        spread = (f"{self.low:.1f}–{self.high:.1f}, median of {self.rounds}" if self.has_range
                  else "one measurement")
        return f"{self.median:.1f} ms per face ({spread}{', measured while busy' if self.busy else ''})"


def apart(a: Timing, b: Timing) -> bool:
    """Whether two timings differ by more than measurement noise: their ranges do not overlap."""
    return a.high < b.low or b.high < a.low


def measured_faster(a: Timing, b: Timing) -> bool:
    """Whether a was timed faster than b beyond measurement noise: both in rounds, their ranges apart, a's median
    lower."""
    return a.has_range and b.has_range and apart(a, b) and a.median < b.median


def how_much(ratio: float) -> str:
    """How many times slower the slower of two timings is ("1.4x"), in percent under 1.1 ("4%", not "1.0x")."""
    return f"{ratio:.1f}x" if ratio >= 1.095 else f"{(ratio - 1) * 100:.0f}%"


def comparable(a: Timing, b: Timing) -> bool:
    """Whether two timings can be told apart at all: both have a range and neither was measured while busy."""
    return a.has_range and b.has_range and not a.busy and not b.busy


def _cpu_seconds_of_all_processes() -> float | None:
    """CPU seconds every process on the machine has used since it booted (Linux's /proc/stat; None elsewhere)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal (guest time is counted in user already): all but idle and iowait
    used = sum(fields[:3]) + sum(fields[5:8])
    return used / os.sysconf("SC_CLK_TCK")


class OtherWork:
    """While the block runs, the share of the machine's CPU that other processes (and, on a virtual machine, its
    host) took: `with OtherWork() as other: ...; other.share, other.busy`. share is None where it cannot be read."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, own: Callable[[], float] = time.process_time,
                 everyone: Callable[[], float | None] = _cpu_seconds_of_all_processes, cores: int | None = None):
        self.clock, self.own, self.everyone = clock, own, everyone
        self.cores = cores or os.cpu_count() or 1
        self.share: float | None = None

    def __enter__(self) -> "OtherWork":
        self._start = (self.clock(), self.own(), self.everyone())
        return self

    def __exit__(self, *exc) -> None:
        wall, own, everyone = self.clock(), self.own(), self.everyone()
        if everyone is None or self._start[2] is None or wall <= self._start[0]:
            return
        others = (everyone - self._start[2]) - (own - self._start[1])
        self.share = min(1.0, max(0.0, others / ((wall - self._start[0]) * self.cores)))

    @property
    def busy(self) -> bool | None:
        return None if self.share is None else self.share > BUSY_SHARE
