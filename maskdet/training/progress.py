"""How a training run reports while it works: a stage's Progress, the callbacks that receive it, and Cancelled."""

from collections.abc import Callable
from dataclasses import dataclass

from maskdet.core.errors import Cancelled

STAGES = {  # a run's stages in the order it goes through them: what each does, as the Train page says it
    "landmarks": "finding the face landmarks of photos imported before maskdet stored them",  # once per data home
    "crops": "cutting the face crops",
    "features": "computing backbone features",
    "head": "training the classifier head",
    "finetune": "fine-tuning the last blocks",
    "evaluate": "evaluating on the test split",
    "export": "exporting the ONNX models",
}


@dataclass
class Progress:
    stage: str  # one of STAGES, or "done" when the run has ended
    step: int
    steps: int
    epoch: int = 0
    epochs: int = 0
    loss: float | None = None  # validation loss and accuracy in the epoch stages
    accuracy: float | None = None
    eta_seconds: float | None = None  # left in this stage (with early stopping: if it runs all its epochs)
    train_loss: float | None = None
    train_accuracy: float | None = None
    soonest_seconds: float | None = None  # with early stopping: left if no later epoch improves
    task: str | None = None  # what the stage is doing now, where its steps are tasks (export)

    @property
    def ends_epoch(self) -> bool:
        """Whether this is fit()'s end-of-epoch report (the epoch stages' reports with validation figures)."""
        return self.stage in ("head", "finetune") and self.accuracy is not None

    def history_entry(self) -> dict:
        """An epoch's figures as history.json and the registry's live curves keep them."""
        return {"stage": self.stage, "epoch": self.epoch, "loss": self.train_loss, "accuracy": self.train_accuracy,
                "val_loss": self.loss, "val_accuracy": self.accuracy}


@dataclass
class Callbacks:
    on_progress: Callable[[Progress], None] = lambda progress: None
    should_cancel: Callable[[], bool] = lambda: False

    def report(self, progress: Progress) -> None:
        if self.should_cancel():
            raise Cancelled()
        self.on_progress(progress)
