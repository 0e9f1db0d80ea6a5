"""Train, validation and test splits: stratified by class, seeded, and keeping each near-duplicate group of photos (with
every face in them) on one side."""

import random
from collections import Counter, defaultdict

import sqlalchemy as sa

from maskdet.core.errors import StoreError
from maskdet.data.catalog import FaceRecord
from maskdet.data.database import faces_table, labels_table, photos_table

SPLITS = ("train", "val", "test")


def checked_split(shares) -> tuple[float, float, float]:
    """Train, validation and test shares as numbers, or a StoreError unless they are three non-negative numbers that
    add up to 1, train above 0."""
    shares = tuple(float(share) for share in shares)
    if len(shares) != 3 or not 0.99 < sum(shares) < 1.01 or min(shares) < 0 or shares[0] == 0:
        raise StoreError(f"Split ratios {', '.join(f'{share:g}' for share in shares)}: make train, validation and "
                         f"test three non-negative shares that add up to 1, train above 0 (these add up to "
                         f"{sum(shares):.2f}).")
    return shares


def _cut_groups(groups: list[int], sizes: dict[int, int], ratios) -> dict[int, str]:
    """Assign shuffled groups to splits by cumulative face count; val/test get a group when there are 3+."""
    total = sum(sizes.values())
    bounds = (ratios[0] * total, (ratios[0] + ratios[1]) * total)
    assignment, seen = {}, 0
    for group in groups:
        middle = seen + sizes[group] / 2
        assignment[group] = "train" if middle < bounds[0] else "val" if middle < bounds[1] else "test"
        seen += sizes[group]
    if len(groups) >= 3:
        for split, position, ratio in (("test", -1, ratios[2]), ("val", -2, ratios[1])):
            if ratio > 0 and split not in assignment.values():
                assignment[groups[position]] = split
    return assignment


class Splits:
    """Assigning and counting the splits."""

    def assign_splits(self, ratios: tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 0) -> dict:
        """Stratified, seeded train/val/test split of the faces that keeps each near-duplicate group of photos in one
        split (a group counts under the class most of its faces have)."""
        ratios = checked_split(ratios)
        records = self.faces()
        members: dict[int, list[FaceRecord]] = defaultdict(list)
        for record in records:
            members[record.dup_group].append(record)
        by_label: dict[str, list[int]] = defaultdict(list)
        for group, items in members.items():
            by_label[Counter(r.label for r in items).most_common(1)[0][0]].append(group)
        assignment = {}
        for label, label_groups in by_label.items():
            rng = random.Random(f"{seed}:{label}")
            label_groups.sort(key=lambda g: min(r.sha256 for r in members[g]))
            rng.shuffle(label_groups)
            assignment.update(_cut_groups(label_groups, {g: len(members[g]) for g in label_groups}, ratios))
        with self.engine.begin() as conn:
            for split in SPLITS:
                ids = sorted({r.photo_id for g, s in assignment.items() if s == split for r in members[g]})
                for chunk in range(0, len(ids), 500):
                    conn.execute(photos_table.update().where(photos_table.c.id.in_(ids[chunk:chunk + 500]))
                                 .values(split=split))
        return self.split_counts()

    def split_counts(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {s: {} for s in SPLITS}
        """Faces per split and label."""
        query = (sa.select(photos_table.c.split, labels_table.c.name, sa.func.count(faces_table.c.id))
                 .select_from(faces_table.join(photos_table).join(labels_table))
                 .where(photos_table.c.split.is_not(None))
                 .group_by(photos_table.c.split, labels_table.c.id).order_by(labels_table.c.id))
        with self.engine.connect() as conn:
            for split, label, count in conn.execute(query):
                counts[split][label] = count
        return counts
