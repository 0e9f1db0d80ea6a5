"""Near-duplicate search (maskdet/vision/near_duplicates.py): exactly the hashes a comparison with every stored one
finds, whether they are in the sorted part of the index or added since; and the same groups as that comparison on real
photos."""

import numpy as np
import pytest
import sqlalchemy as sa

from maskdet.data.database import photos_table
from maskdet.vision import near_duplicates
from maskdet.vision.near_duplicates import NEAR_DUPLICATE_BITS, HashIndex, hash_distances
from tests.conftest import photo_pairs


def flipped(row: np.ndarray, bits: int, rng) -> np.ndarray:
    """A copy of a packed hash with `bits` bits flipped."""
    unpacked = np.unpackbits(row)
    unpacked[rng.choice(256, bits, replace=False)] ^= 1
    return np.packbits(unpacked)


@pytest.mark.parametrize("rebuild_every", [16, 10_000])  # sorted and added-since parts, or added-since only
def test_near_finds_exactly_the_hashes_within_the_bound(monkeypatch, rebuild_every):
    monkeypatch.setattr(near_duplicates, "REBUILD_EVERY", rebuild_every)
    rng = np.random.default_rng(0)
    stored = rng.integers(0, 256, (300, 32), dtype=np.uint8)
    stored[150:] = [flipped(stored[i % 150], 25, rng) for i in range(150)]  # near pairs, 25 bits apart
    index = HashIndex()
    for start in range(0, 300, 7):  # added a few at a time, as batches of an import
        index.add(stored[start:start + 7], np.arange(start, min(start + 7, 300)))
    for bits in (0, 10, 29, 30, 31, 45):
        for source in rng.integers(0, 300, 20):
            query = flipped(stored[source], bits, rng).tobytes().hex()
            expected = np.flatnonzero(hash_distances(stored, query) <= NEAR_DUPLICATE_BITS)
            assert np.array_equal(np.sort(index.near(query)), expected), (bits, source)
    assert len(index) == 300 and list(index.groups[:3]) == [0, 1, 2]
    index.relabel([1, 2], 0)
    assert list(index.groups[:4]) == [0, 0, 0, 3]


def test_real_photos_get_the_groups_of_a_comparison_with_every_photo(store, detector, shared_data, tmp_path,
                                                                     monkeypatch):
    """40 pasted-mask pairs of masks-small imported with a small sort interval: each photo's group is that of the
    photos within NEAR_DUPLICATE_BITS imported before it (groups merged), as comparing with all of them gives."""
    monkeypatch.setattr(near_duplicates, "REBUILD_EVERY", 8)
    for name in photo_pairs(shared_data)[:40]:
        for label, file in (("with_mask", f"{name}-with-mask.jpg"), ("without_mask", f"{name}.jpg")):
            (tmp_path / label).mkdir(exist_ok=True)
            (tmp_path / label / file).write_bytes((shared_data / label / file).read_bytes())
    store.import_folder(tmp_path, detector)
    with store.engine.connect() as conn:  # in import order
        rows = conn.execute(sa.select(photos_table.c.phash, photos_table.c.dup_group).order_by(photos_table.c.id)).all()
    hashes = np.array([np.frombuffer(bytes.fromhex(row.phash), np.uint8) for row in rows])
    expected = list(range(len(rows)))  # a comparison with all earlier photos, merging groups as the import does
    for i, row in enumerate(rows):
        for j in np.flatnonzero(hash_distances(hashes[:i], row.phash) <= NEAR_DUPLICATE_BITS):
            old, new = expected[i], expected[j]
            expected = [new if group == old else group for group in expected]

    def partition(groups) -> set[frozenset]:
        return {frozenset(i for i, g in enumerate(groups) if g == group) for group in set(groups)}

    assert partition([row.dup_group for row in rows]) == partition(expected)
    assert len(partition(expected)) < len(rows)  # pasted-mask pairs were grouped
