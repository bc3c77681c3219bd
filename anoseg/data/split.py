"""The train/val/test split rule of anomaly data (LFD/SeaS protocol, docs/protocol.md §2.1), here and nowhere else:

* real anomalies, per (category, defect type): image names sorted as text, the first ⌊n/3⌋ → train, the rest → test;
* every generated pair and every ``train/good`` image → train; every ``test/good`` image → test;
* a dataset that fixes its own train/test (``Sample.split``) keeps it.

Two recipe settings (``split``, ``anoseg.recipes.SplitSettings``) change the training side only; the test side is
the protocol's for every value, so results stay paired:

* ``real_fraction`` f: of each defect type's first ⌊n/3⌋ real images, only the first ⌊f·n⌋ train; the others between
  them and the test part are used by neither (``None``). f = 1/3 (the default) is the protocol; larger values are
  capped at ⌊n/3⌋;
* ``val`` v: each training-side image (``train/good``, real training defect, generated pair) goes to ``val`` instead
  of ``train`` when the hash of its path relative to its data root falls below v (``held_out``). The decision is the
  file's own: adding or removing files never moves another file, and copying the dataset elsewhere changes nothing.

Validation and the data report are ``validation``'s; reading folders into manifest rows is ``build``'s.
"""

from __future__ import annotations

import hashlib
import math

from anoseg.constants import PROTOCOL_REAL_FRACTION, SPLIT_TEST, SPLIT_TRAIN, SPLIT_VAL
from anoseg.data.layouts import DEFECT, GENERATED, TEST_GOOD, TRAIN_GOOD, Sample


def n_train(n: int) -> int:
    """How many of a defect type's ``n`` real anomalies go to train: ⌊n/3⌋ (LFD; 0 for n < 3).

    Example:
        >>> [n_train(n) for n in (1, 2, 3, 4, 10, 20)]
        [0, 0, 1, 1, 3, 6]
    """
    return n // 3


def n_real_train(n: int, real_fraction: float = PROTOCOL_REAL_FRACTION) -> int:
    """How many of a defect type's ``n`` real anomalies train with ``split.real_fraction`` f: ⌊f·n⌋, at most the
    protocol's ⌊n/3⌋ (the test part never shrinks). The default f = 1/3 gives exactly ``n_train(n)``.

    Example:
        >>> [n_real_train(9, f) for f in (0.0, 0.1, 1 / 3, 0.5, 1.0)]
        [0, 0, 3, 3, 3]
    """
    # the small epsilon makes f = 1/3 (a float just below a third) give ⌊n/3⌋ for every n
    return min(n_train(n), math.floor(real_fraction * n + 1e-9))


def hash_fraction(key: str) -> float:
    """A number in [0, 1) fixed by ``key`` alone: the first 8 bytes of its SHA-256 over 2⁶⁴.

    Example:
        >>> 0 <= hash_fraction("bottle/train/good/000.png") < 1
        True
    """
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2.0**64


def held_out(key: str, val: float) -> bool:
    """Whether the training-side file named ``key`` (its path relative to its data root, ``/``-separated) goes to
    the validation part for ``split.val = val``: ``hash_fraction(key) < val`` (so about a fraction ``val`` of the
    files; never with ``val = 0``)."""
    return val > 0 and hash_fraction(key) < val


def assign_split(role: str, index: int, n: int, *, key: str = "", val: float = 0.0,
                 real_fraction: float = PROTOCOL_REAL_FRACTION) -> str | None:
    """The split of a sample: ``"train"``, ``"val"``, ``"test"``, or ``None`` for a real defect that the
    ``real_fraction`` leaves out of both sides.

    Generated and ``train/good`` → the training side, ``test/good`` → test, real anomalies by the 1/3 rule on their
    position ``index`` in the name-sorted folder of ``n`` images (test from ⌊n/3⌋ on, training side below
    ``n_real_train(n, real_fraction)``). A training-side sample is ``val`` when ``held_out(key, val)``.

    Example:
        >>> [assign_split("defect", i, 7) for i in range(7)].count("train")
        2
        >>> [assign_split("defect", i, 7, real_fraction=0.0) for i in range(7)].count(None)
        2
    """
    if role == TEST_GOOD:
        return SPLIT_TEST
    if role == DEFECT:
        if index >= n_train(n):
            return SPLIT_TEST
        if index >= n_real_train(n, real_fraction):
            return None
    elif role not in (TRAIN_GOOD, GENERATED):
        raise ValueError(f"unknown sample role {role!r}")
    return SPLIT_VAL if held_out(key, val) else SPLIT_TRAIN


def sample_split(sample: Sample, key: str = "", val: float = 0.0,
                 real_fraction: float = PROTOCOL_REAL_FRACTION) -> str | None:
    """The split of a sample: the one its dataset fixes (``Sample.split``; its training images may still be held out
    for validation, ``real_fraction`` does not apply), else ``assign_split``'s rule. ``key``: the sample's image path
    relative to its data root."""
    if sample.split == SPLIT_TRAIN:
        return SPLIT_VAL if held_out(key, val) else SPLIT_TRAIN
    return sample.split or assign_split(sample.role, sample.index, sample.n, key=key, val=val,
                                        real_fraction=real_fraction)
