"""The class confidence threshold, and the figures to choose it from on a run's test split. Pure numpy, no I/O.

One threshold per model: a face whose top class probability is below it is labelled "uncertain" (Live, `maskdet
predict`, the bundle's script); at or above it, it gets its top class. At a threshold, per class k:

- precision: of the faces labelled k, the share whose true class is k;
- recall: of the faces whose true class is k, the share labelled k (an uncertain face is not found);
- uncertain: of the faces whose true class is k, the share labelled uncertain.

So raising the threshold trades recall for precision, and for each class recall + uncertain + the share labelled as
another class = 1. The "all faces" row counts every face: precision over the faces labelled, recall over all faces.
"""

from dataclasses import dataclass

import numpy as np

DEFAULT_THRESHOLD = 0.6  # a model's threshold until one is chosen on the Metrics page
THRESHOLD_KEY = "class_threshold"  # in a run's metrics and in the ONNX metadata
HISTOGRAM_BINS = 20  # bins of the confidence histogram over 0-1 (0.05 wide)
ALL_FACES = "all faces"


def check_threshold(value) -> float:
    """`value` as a float strictly between 0 and 1; anything else is a ValueError saying so."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not 0 < number < 1:  # NaN fails the comparison too
        raise ValueError(f"The confidence threshold must be a number between 0 and 1 (not included), such as "
                         f"{DEFAULT_THRESHOLD}; {value!r} is not.")
    return number


def threshold_grid(num_classes: int) -> list[float]:
    """Thresholds 0.01 apart from the lowest that can matter (a top probability is at least 1 / classes) to 0.99."""
    return [step / 100 for step in range(100 // num_classes, 100)]


@dataclass
class Scores:
    """A test split as the threshold sees it: true class indices (N,) and class probabilities (N, classes)."""

    labels: list[str]
    targets: np.ndarray
    probabilities: np.ndarray

    def __post_init__(self):
        self.targets = np.asarray(self.targets, dtype=np.int64)
        self.probabilities = np.asarray(self.probabilities, dtype=np.float64)
        if self.probabilities.shape != (len(self.targets), len(self.labels)):
            raise ValueError(f"{len(self.targets)} test faces and {len(self.labels)} classes need probabilities of "
                             f"shape ({len(self.targets)}, {len(self.labels)}), not {self.probabilities.shape}.")

    def at(self, threshold) -> list[dict]:
        """Per class, then all faces: precision, recall and uncertain share at a threshold (see the module's
        docstring), with the faces labelled and the faces of the class (support). None where a share has no faces."""
        threshold = check_threshold(threshold)
        sure = self.probabilities.max(1) >= threshold
        labelled = np.where(sure, self.probabilities.argmax(1), -1)  # -1: uncertain
        rows = []
        for k, label in enumerate(self.labels):
            ours = self.targets == k
            rows.append(_row(threshold, label, hits=int((ours & (labelled == k)).sum()),
                             labelled=int((labelled == k).sum()), uncertain=int((ours & ~sure).sum()),
                             support=int(ours.sum())))
        rows.append(_row(threshold, ALL_FACES, hits=int((labelled == self.targets).sum()), labelled=int(sure.sum()),
                         uncertain=int((~sure).sum()), support=len(self.targets)))
        return rows

    def curves(self) -> list[dict]:
        """The per-class rows of `at` for every threshold of threshold_grid."""
        return [row for threshold in threshold_grid(len(self.labels)) for row in self.at(threshold)
                if row["class"] != ALL_FACES]

    def histogram(self) -> list[dict]:
        """Per true class, the test faces by top probability in bins 1/HISTOGRAM_BINS wide (from the lowest bin a
        top probability can reach), correct and wrong apart. A bin holds from <= p < to (the last one also p = 1), as
        the threshold labels a face at exactly it."""
        first = HISTOGRAM_BINS // len(self.labels)
        edges = np.arange(first, HISTOGRAM_BINS + 1) / HISTOGRAM_BINS
        top, correct = self.probabilities.max(1), self.probabilities.argmax(1) == self.targets
        rows = []
        for k, label in enumerate(self.labels):
            for outcome, chosen in (("correct", correct), ("wrong", ~correct)):
                counts, _ = np.histogram(top[(self.targets == k) & chosen], edges)
                rows += [{"class": label, "from": float(low), "to": float(high), "outcome": outcome, "faces": int(n)}
                         for low, high, n in zip(edges[:-1], edges[1:], counts)]
        return rows


def _row(threshold: float, label: str, hits: int, labelled: int, uncertain: int, support: int) -> dict:
    return {"threshold": threshold, "class": label,
            "precision": hits / labelled if labelled else None,
            "recall": hits / support if support else None,
            "uncertain": uncertain / support if support else None,
            "labelled": labelled, "support": support}
