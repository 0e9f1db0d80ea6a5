"""A model's timing as measured (core.timing): the record, its text, the rule that calls two timings different, the
busy-machine check, and timing two models side by side (serving.classifier.time_side_by_side)."""

import numpy as np
import pytest

from maskdet.core.contract import Preprocess
from maskdet.core.timing import BUSY_SHARE, OtherWork, Timing, apart, comparable, how_much
from maskdet.serving.classifier import SINGLE_FACES, time_side_by_side


def test_a_timing_is_the_median_and_range_of_its_rounds():
    timing = Timing.of_rounds([2.4, 2.1, 2.6, 2.3, 2.2, 2.5, 2.3], busy=False)
    assert timing == Timing(median=2.3, low=2.1, high=2.6, rounds=7, busy=False)
    assert timing.text() == "2.3 ms per face (2.1–2.6, median of 7)"
    assert Timing.read(timing.to_dict()) == timing
    busy = Timing.of_rounds([9.0, 10.5, 12.0], busy=True)
    assert busy.text() == "10.5 ms per face (9.0–12.0, median of 3, measured while busy)"


def test_an_older_runs_single_figure_is_shown_as_one_measurement():
    old = Timing.read(4.2)
    assert old == Timing(4.2, 4.2, 4.2, 1, None) and not old.has_range
    assert old.text() == "4.2 ms per face (one measurement)"
    assert Timing.of_model({"ms_per_image_batch1": 4.2, "ms_per_image_batch32": 3.5}, 32) == Timing.read(3.5)
    new = Timing(2.3, 2.1, 2.6, 7, False)
    assert Timing.of_model({"ms_per_image_batch1": 2.3, "timing": {"batch1": new.to_dict()}}) == new
    assert Timing.of_model({}) is None and Timing.read(None) is None and Timing.read({"median": 1}) is None
    assert Timing.read(True) is None


def test_two_timings_differ_only_when_their_ranges_do_not_overlap():
    a = Timing(2.3, 2.1, 2.6, 7, False)
    assert not apart(a, Timing(2.9, 2.5, 3.4, 7, False))  # 2.5 < 2.6: within measurement noise
    assert apart(a, Timing(3.0, 2.7, 3.4, 7, False)) and apart(Timing(3.0, 2.7, 3.4, 7, False), a)
    assert comparable(a, a)
    assert not comparable(a, Timing(3.0, 2.7, 3.4, 7, True))  # measured while busy
    assert not comparable(a, Timing.read(7.9))  # an older run's single figure has no range


def test_how_much_slower_reads_in_percent_when_it_is_little():
    assert how_much(3.43) == "3.4x" and how_much(1.1) == "1.1x" and how_much(1.04) == "4%"


def test_the_share_of_the_cpu_other_processes_took():
    """Other processes' CPU time is everyone's less this process's, over the wall time times the cores."""
    clock = iter([100.0, 101.0])  # one second of wall time
    everyone = iter([50.0, 51.5])  # 1.5 CPU seconds used by all processes meanwhile
    own = iter([10.0, 10.5])  # 0.5 of them by this one
    with OtherWork(lambda: next(clock), lambda: next(own), lambda: next(everyone), cores=2) as other:
        pass
    assert other.share == pytest.approx(0.5) and other.busy is (0.5 > BUSY_SHARE)
    clock, own = iter([0.0, 1.0]), iter([0.0, 0.9])
    with OtherWork(lambda: next(clock), lambda: next(own), lambda: 7.0, cores=2) as quiet:  # only this process
        pass
    assert quiet.share == 0 and quiet.busy is False
    with OtherWork(everyone=lambda: None) as unknown:  # no /proc/stat: not known
        pass
    assert unknown.share is None and unknown.busy is None


def test_the_real_machine_reads_a_share_between_0_and_1():
    with OtherWork() as other:
        sum(range(100_000))
    assert other.share is None or 0 <= other.share <= 1


class FakeModel:
    """A classifier that records the batch sizes it was given, in one shared log."""

    def __init__(self, name: str, log: list):
        self.name, self.log, self.preprocess = name, log, Preprocess(input_size=8)

    def predict(self, crops: np.ndarray) -> np.ndarray:
        assert crops.dtype == np.uint8 and crops.shape[1:] == (8, 8, 3)
        self.log.append((self.name, len(crops)))
        return np.zeros((len(crops), 2), np.float32)


def test_models_are_timed_side_by_side_in_alternating_rounds_on_the_same_faces():
    log, rounds = [], []
    models = {"onnx": FakeModel("onnx", log), "int8": FakeModel("int8", log)}
    faces = np.random.default_rng(0).integers(0, 255, (5, 8, 8, 3), dtype=np.uint8)
    timings = time_side_by_side(models, faces, rounds=3, on_round=lambda done, total: rounds.append((done, total)))
    assert rounds == [(0, 3), (1, 3), (2, 3)]
    assert set(timings) == {"onnx", "int8"} and all(set(t) == {1, 32} for t in timings.values())
    for by_batch in timings.values():
        for timing in by_batch.values():
            assert timing.rounds == 3 and timing.low <= timing.median <= timing.high
    one_round = [("onnx", 1)] * SINGLE_FACES + [("onnx", 32)] + [("int8", 1)] * SINGLE_FACES + [("int8", 32)]
    swapped = one_round[len(one_round) // 2:] + one_round[:len(one_round) // 2]
    warm_up = [("onnx", 1), ("onnx", 32), ("int8", 1), ("int8", 32)]
    assert log == warm_up + one_round + swapped + one_round  # the order turns every other round
