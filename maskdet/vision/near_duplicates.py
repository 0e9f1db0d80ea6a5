"""Finding a photo's near-duplicates among many: the stored 256-bit perceptual hashes within NEAR_DUPLICATE_BITS of a
new one, without comparing it with every stored hash.

The rule is the pigeonhole principle. Cut each hash into its 32 bytes: two hashes at most 30 bits apart differ in at
most 30 bytes, so at least two of their 32 bytes are equal. The index keeps, for each byte position, the stored hashes
sorted by that byte; a query gathers the hashes sharing a byte with it at some position, keeps those sharing two or
more, and measures only those. Exact: it finds every hash a comparison with all of them would, and no other.
"""

import numpy as np

NEAR_DUPLICATE_BITS = 30  # of 256: joins pasted-mask pairs without making giant groups (docs/performance.md)
HASH_BYTES = 32
SHARED_BYTES = HASH_BYTES - NEAR_DUPLICATE_BITS  # bytes two near-duplicates have in common, at least
REBUILD_EVERY = 2048  # hashes added since the last sort are compared one by one until there are this many
POPCOUNT = np.array([bin(value).count("1") for value in range(256)], np.uint8)


def hash_bytes(*hex_hashes: str) -> np.ndarray:
    """Hex hashes as rows of packed bytes (n, 32)."""
    return np.frombuffer(bytes.fromhex("".join(hex_hashes)), np.uint8).reshape(-1, HASH_BYTES)


def hash_distances(hashes: np.ndarray, one: str) -> np.ndarray:
    """Hamming distances from one hex hash to rows of packed uint8 hashes."""
    if len(hashes) == 0:
        return np.zeros(0, int)
    return POPCOUNT[hashes ^ hash_bytes(one)[0]].sum(axis=1, dtype=np.int64)


class HashIndex:
    """Stored hashes (rows of 32 bytes) with a value each (a near-duplicate group), searchable by near(). Hashes are
    added as photos are imported; every REBUILD_EVERY additions the byte positions are sorted again."""

    def __init__(self):
        self.hashes = np.zeros((0, HASH_BYTES), np.uint8)
        self.values = np.zeros(0, np.int64)
        self._order = np.zeros((HASH_BYTES, 0), np.int64)  # per byte position: row numbers sorted by that byte
        self._starts = np.zeros((HASH_BYTES, 257), np.int64)  # per byte position: where each byte value starts there
        self._size = 0  # rows added so far (hashes has room for more)

    def __len__(self) -> int:
        return self._size

    @property
    def groups(self) -> np.ndarray:
        """The value of each stored hash (a view: relabel changes it)."""
        return self.values[:self._size]

    def add(self, hashes: np.ndarray, values) -> None:
        """Rows of packed hashes (n, 32) and their values."""
        hashes, values = np.asarray(hashes, np.uint8).reshape(-1, HASH_BYTES), np.asarray(values, np.int64).reshape(-1)
        needed = self._size + len(hashes)
        if needed > len(self.hashes):  # grow by doubling: adding one at a time stays cheap
            room = max(needed, 2 * len(self.hashes), 1024)
            self.hashes = np.concatenate([self.hashes[:self._size], np.zeros((room - self._size, HASH_BYTES),
                                                                             np.uint8)])
            self.values = np.concatenate([self.values[:self._size], np.zeros(room - self._size, np.int64)])
        self.hashes[self._size:needed], self.values[self._size:needed] = hashes, values
        self._size = needed
        if self._size - self._order.shape[1] >= REBUILD_EVERY:
            stored = self.hashes[:self._size].T
            self._order = np.argsort(stored, axis=1, kind="stable")
            by_byte = np.take_along_axis(stored, self._order, axis=1)
            self._starts = np.stack([np.searchsorted(row, np.arange(257)) for row in by_byte])

    def near(self, hex_hash: str) -> np.ndarray:
        """Row numbers of the stored hashes within NEAR_DUPLICATE_BITS of hex_hash."""
        query = hash_bytes(hex_hash)[0]
        indexed = self._order.shape[1]
        positions = np.arange(HASH_BYTES)
        lows, highs = self._starts[positions, query], self._starts[positions, query.astype(np.int64) + 1]
        shared = np.concatenate([self._order[row, low:high] for row, low, high in zip(positions, lows, highs)])
        candidates = np.flatnonzero(np.bincount(shared, minlength=indexed) >= SHARED_BYTES)
        candidates = np.concatenate([candidates, np.arange(indexed, self._size)])  # not sorted yet: all of them
        distances = POPCOUNT[self.hashes[candidates] ^ query].sum(axis=1, dtype=np.int64)
        return candidates[distances <= NEAR_DUPLICATE_BITS]

    def relabel(self, old: list[int], new: int) -> None:
        """Values in `old` become `new` (near-duplicate groups merged)."""
        self.groups[np.isin(self.groups, old)] = new
