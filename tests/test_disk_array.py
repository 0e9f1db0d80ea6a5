"""DiskArray: rows appended to a file and read back by index, without the file staying mapped."""

from pathlib import Path

import numpy as np
import pytest

from maskdet.core.disk_array import DiskArray


def test_rows_read_back_as_written_by_slice_and_by_row_numbers(tmp_path):
    rows = np.random.default_rng(0).integers(0, 255, (10, 4, 4, 3), dtype=np.uint8)
    array = DiskArray(tmp_path / "crops.u8", (4, 4, 3), np.uint8)
    array.append(rows[:3])
    array.append(rows[3:])
    assert len(array) == 10 and array.shape == (10, 4, 4, 3)
    np.testing.assert_array_equal(array[:], rows)
    np.testing.assert_array_equal(array[2:7], rows[2:7])
    np.testing.assert_array_equal(array[np.array([9, 0, 4, 4])], rows[[9, 0, 4, 4]])
    assert type(array[1:2]) is np.ndarray and (tmp_path / "crops.u8").stat().st_size == rows.nbytes


def test_an_empty_array_reads_as_no_rows(tmp_path):
    array = DiskArray(tmp_path / "features.f32", (8,), np.float32)
    assert array[:].shape == (0, 8) and array[0:64].dtype == np.float32 and array[np.array([], int)].shape == (0, 8)


def test_rows_of_another_shape_are_refused(tmp_path):
    array = DiskArray(tmp_path / "features.f32", (8,), np.float32)
    with pytest.raises(ValueError, match=r"Rows of shape \(7,\) do not fit features.f32's \(8,\)"):
        array.append(np.zeros((2, 7)))
    assert len(array) == 0


def mapped(path: Path) -> bool:
    return str(path) in Path("/proc/self/maps").read_text()


def test_reading_leaves_the_file_unmapped(tmp_path):
    """A mapping kept open would count every page read through it in the process's memory."""
    array = DiskArray(tmp_path / "features.f32", (256,), np.float32)
    for start in range(0, 4096, 512):
        array.append(np.full((512, 256), start, np.float32))
    total = sum(float(array[np.arange(start, start + 64)].sum()) for start in range(0, 4096, 64))
    assert total == pytest.approx(sum(start * 512 * 256 for start in range(0, 4096, 512)))
    assert not mapped(tmp_path / "features.f32")
