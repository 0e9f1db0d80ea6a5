"""Arrays a training run keeps in files: face crops and features are written a row at a time and read back a batch
at a time, so that a run goes through more of them than fit in memory, and its memory does not grow with the
dataset."""

from pathlib import Path

import numpy as np


class DiskArray:
    """Rows of one shape and type appended to a file and read back by index (a slice or row numbers) as a new array.

    Each read maps the file only while it copies the rows out: a mapping kept open would count every page read
    through it in the process's memory, which then grows to the file's size over an epoch."""

    def __init__(self, path: Path, row_shape: tuple[int, ...], dtype):
        self.path = Path(path)
        self.row_shape = tuple(int(side) for side in row_shape)
        self.dtype = np.dtype(dtype)
        self.length = 0
        self.path.write_bytes(b"")

    def __len__(self) -> int:
        return self.length

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.length, *self.row_shape)

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, self.dtype)
        if rows.shape[1:] != self.row_shape:
            raise ValueError(f"Rows of shape {rows.shape[1:]} do not fit {self.path.name}'s {self.row_shape}.")
        with open(self.path, "ab") as file:
            file.write(rows.data)
        self.length += len(rows)

    def __getitem__(self, index) -> np.ndarray:
        if self.length == 0:
            return np.zeros(self.shape, self.dtype)[index]
        return np.array(np.memmap(self.path, self.dtype, "r", shape=self.shape)[index])
