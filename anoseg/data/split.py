"""The train/test split rule of anomaly data (LFD/SeaS protocol, docs/protocol.md), here and nowhere else:

* real anomalies, per (category, defect type): image names sorted as text, the first ⌊n/3⌋ → train, the rest → test;
* every generated pair and every ``train/good`` image → train; every ``test/good`` image → test;
* a dataset that fixes its own train/test (``Sample.split``) keeps it.

Validation and the data report are ``validation``'s; reading folders into manifest rows is ``build``'s.
"""

from __future__ import annotations

from anoseg.data.layouts import DEFECT, GENERATED, TEST_GOOD, TRAIN_GOOD, Sample


def n_train(n: int) -> int:
    """How many of a defect type's ``n`` real anomalies go to train: ⌊n/3⌋ (LFD; 0 for n < 3).

    Example:
        >>> [n_train(n) for n in (1, 2, 3, 4, 10, 20)]
        [0, 0, 1, 1, 3, 6]
    """
    return n // 3


def assign_split(role: str, index: int, n: int) -> str:
    """The split of a sample: generated and ``train/good`` → train, ``test/good`` → test, real anomalies by the 1/3
    rule on their position ``index`` in the name-sorted folder of ``n`` images.

    Example:
        >>> [assign_split("defect", i, 7) for i in range(7)].count("train")
        2
    """
    if role in (TRAIN_GOOD, GENERATED):
        return "train"
    if role == TEST_GOOD:
        return "test"
    if role == DEFECT:
        return "train" if index < n_train(n) else "test"
    raise ValueError(f"unknown sample role {role!r}")


def sample_split(sample: Sample) -> str:
    """The split of a sample: the one its dataset fixes (``Sample.split``), else ``assign_split``'s rule."""
    return sample.split or assign_split(sample.role, sample.index, sample.n)
