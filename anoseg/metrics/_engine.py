"""The counting engine behind ``anoseg.metrics.anomaly``: exact counts at each distinct positive score, fast.

Private: the metric definitions (and their sources) are in :mod:`anoseg.metrics.anomaly`; this module only computes
the counts they need. ``tests/metrics/test_reference.py`` holds it equal to a brute-force transcription of the
definitions, and ``tests/metrics/test_anomaly.py`` / ``test_aupro.py`` to scikit-learn and anomalib.

Every one of those numbers only needs, for each *distinct positive score* ``v``, the counts
``TP(v) = #pos >= v``, ``#neg < v`` and ``#neg <= v`` (a :class:`Tally`):

* AP = Σ_v (#pos == v) / P · TP(v) / (TP(v) + FP(v)) — recall only moves at positive scores, so thresholds held by
  negatives alone add nothing to the step integral.
* F1 = 2·TP / (TP + FP + P) and IoU = TP / (FP + P): between two consecutive positive scores TP is constant and FP
  only grows as the threshold falls, so the maximum over *all* thresholds is reached at a positive score. Thresholds
  above the top positive give TP = 0, i.e. F1 = 0 or NaN (dropped) and IoU = 0 ("predict nothing").
* AUROC = Mann-Whitney U / (P·N) with ties counted one half — the trapezoidal area under the ROC curve.
* AUPRO = a Mann-Whitney-like sum weighted by 1/region size (see ``anoseg.metrics.anomaly.aupro``).

The fast path sorts the pixels **once**, label included: a non-negative float32 orders like its uint32 bit pattern,
whose sign bit is free, so ``key = bits << 1 | label`` sorts by score with each negative just before the positives of
equal score. In that one sorted copy the k-th positive at position j has exactly ``j - k`` negatives ``<= v`` before
it; the negatives equal to ``v`` are the short run just before the first positive of ``v``. There is no search of
the positives in 80M negatives, no boolean split into two copies, and the extra memory is one uint32 per pixel. The
oracle IoU of each image partitions the image's own scores (top ``k`` only, ``k`` a few times the defect size) instead
of sorting them, and the image's pixels are read once, while they sit in the cache, for all per-image work. On large
categories (``_THREAD_MIN`` pixels and more) two threads share the work: the keys of half the images, the IoUs, and
the sort and counting pass in two halves split by an in-place median partition (:func:`_sorted_tally`). Other dtypes
or negative scores take a generic path (sort the positives and negatives apart, ``searchsorted``).

What :mod:`anoseg.metrics.anomaly` uses: :func:`as_bool`, :func:`flat_pair`, :func:`split_sorted`,
:func:`tally_flat` → :class:`Tally` → :func:`binary_from_tally`, :func:`best_iou_flat` and :func:`scan_maps`
(→ :class:`Scan`). Everything with a leading underscore is internal to this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Scan", "Tally", "as_bool", "best_iou_flat", "binary_from_tally", "flat_pair", "scan_maps", "split_sorted",
           "tally_flat"]

_SIGN = 1 << 31  # sign bit of a float32's bit pattern
_CHUNK = 1 << 17  # elements per chunk of keys (512 KB): stays in L2 while it is worked on
_IOU_TOP = 4  # first partition of an image keeps 4× its defect pixels (IoU >= 1/4 settles it), then 8× more
_IOU_GROW = 8
_THREAD_MIN = 1 << 22  # pixels from which the work runs in two threads (below, a thread costs more than it saves)
_NAN_KEYS = np.uint32(0x7F800000 << 1 | 1)  # keys above this hold a NaN (inf's key with the label bit set)


# --------------------------------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------------------------------


def as_bool(labels: npt.ArrayLike) -> np.ndarray:
    """Labels/masks as a bool array: non-zero = positive. A bool input is returned without a copy."""
    labels = np.asarray(labels)
    return labels if labels.dtype == np.bool_ else labels != 0


def _check_dtype(scores: np.ndarray) -> None:
    if not (np.issubdtype(scores.dtype, np.floating) or np.issubdtype(scores.dtype, np.integer)):
        raise ValueError(f"scores must be a real-valued array, got dtype {scores.dtype}")


def flat_pair(scores: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores)
    labels = as_bool(labels)
    if scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must have the same shape")
    _check_dtype(scores)
    return scores.ravel(), labels.ravel()


def split_sorted(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores of the positives and of the negatives (flat inputs), each sorted ascending, in the scores' dtype."""
    pos = scores[labels]  # boolean indexing copies: both arrays are ours to sort in place
    neg = scores[~labels]
    pos.sort()
    neg.sort()
    # NaN sorts last, so one look at each end finds it without scanning 80M values again
    if (pos.size and np.isnan(pos[-1])) or (neg.size and np.isnan(neg[-1])):
        raise ValueError("scores contain NaN")
    return pos, neg


def _group_starts(sorted_values: np.ndarray) -> np.ndarray:
    """Index of the first element of each run of equal values in a sorted array."""
    new = np.empty(sorted_values.size, bool)
    new[:1] = True
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=new[1:])
    return np.flatnonzero(new)


# --------------------------------------------------------------------------------------------------------------------
# counts at the distinct positive scores ("tally"), from sorted keys or from two sorted arrays
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class Tally:
    """Counts at each distinct positive score ``v`` (ascending) of one pooled set of scores.

    ``edge`` (asked with an FPR limit, for AUPRO) is ``(e, #neg < e, #neg <= e)`` for the negative score ``e`` at
    which the FPR, walking down the scores, reaches the limit: the ``ceil(limit · N)``-th largest negative.
    """

    values: np.ndarray  # distinct positive scores, ascending, in the scores' dtype
    n_equal: np.ndarray  # #pos == v
    tp: np.ndarray  # #pos >= v
    neg_below: np.ndarray  # #neg < v
    neg_at_or_below: np.ndarray  # #neg <= v
    n_pos: int
    n_neg: int
    edge: tuple[Any, int, int] | None = None


def _edge_rank(n_neg: int, fpr_limit: float | None) -> int | None:
    """Ascending index of the negative where the FPR reaches ``fpr_limit`` (None: not asked or no negative)."""
    if fpr_limit is None or n_neg == 0:
        return None
    return n_neg - max(1, math.ceil(fpr_limit * n_neg))


def _tally_split(scores: np.ndarray, labels: np.ndarray, fpr_limit: float | None = None) -> Tally:
    """Generic path (any real dtype, flat inputs): sort positives and negatives apart, search one in the other."""
    pos, neg = split_sorted(scores, labels)
    starts = _group_starts(pos)
    values = pos[starts]
    edge = None
    m = _edge_rank(neg.size, fpr_limit)
    if m is not None:
        e = neg[m]
        edge = (e.item(), int(np.searchsorted(neg, e, "left")), int(np.searchsorted(neg, e, "right")))
    return Tally(
        values=values,
        n_equal=np.diff(starts, append=pos.size),
        tp=pos.size - starts,
        neg_below=np.searchsorted(neg, values, "left"),
        neg_at_or_below=np.searchsorted(neg, values, "right"),
        n_pos=int(pos.size),
        n_neg=int(neg.size),
        edge=edge,
    )


def _fill_keys(scores: np.ndarray, labels: np.ndarray, out: np.ndarray) -> int | None:
    """``out = bits(scores) << 1 | labels`` for float32 ``scores``; returns the largest bit pattern (the bits of the
    max score, as non-negative floats order like their bits), or None (out unusable) if a sign bit is set."""
    bits = scores.view(np.uint32)
    top = int(bits.max()) if bits.size else 0
    if top >= _SIGN:
        return None
    np.left_shift(bits, 1, out=out)
    np.bitwise_or(out, labels, out=out)
    return top


def _sorted_keys(scores: np.ndarray, labels: np.ndarray) -> np.ndarray | None:
    """Sorted keys of flat float32 scores and bool labels, or None when a score has its sign bit set."""
    keys = np.empty(scores.size, np.uint32)
    for start in range(0, scores.size, _CHUNK):  # chunks: shift and or while the chunk is in the cache
        stop = start + _CHUNK
        if _fill_keys(scores[start:stop], labels[start:stop], keys[start:stop]) is None:
            return None
    keys.sort()
    return keys


def _run_starts(keys: np.ndarray, last: np.ndarray, key: np.ndarray) -> np.ndarray:
    """First index of the run of ``key[i]`` ending at ``last[i]`` (``keys[last[i]] == key[i]``, sorted ``keys``).

    Galloping from ``last`` then bisecting, vectorised over ``i``: used only for the rare runs of negatives tied
    with a positive score that cross a chunk boundary, so probes near ``last`` are cheap and long runs take log steps.
    """
    start = last.copy()  # leftmost index known to hold key
    todo = np.arange(last.size)
    lo = np.zeros_like(last)  # bisection range [lo, start]
    step = 1
    while todo.size:  # gallop: step doubles while keys[start - step] still equals key
        probe = start[todo] - step
        inside = probe >= 0
        equal = np.zeros(todo.size, bool)
        equal[inside] = keys[probe[inside]] == key[todo[inside]]
        start[todo[equal]] = probe[equal]
        done = todo[~equal]
        lo[done] = np.where(inside[~equal], probe[~equal] + 1, 0)
        todo = todo[equal]
        step *= 2
    todo = np.flatnonzero(lo < start)
    hi = start  # keys[hi] == key; find the first index in [lo, hi] holding key
    while todo.size:
        mid = (lo[todo] + hi[todo]) // 2
        at = keys[mid] >= key[todo]  # nothing in [lo, hi] exceeds key, so >= means ==
        hi[todo[at]] = mid[at]
        lo[todo[~at]] = mid[~at] + 1
        todo = todo[lo[todo] < hi[todo]]
    return hi


def _tally_keys(keys: np.ndarray, n_pos: int, fpr_limit: float | None = None, chunk: int = _CHUNK) -> Tally:
    """Fast path: counts from the sorted keys ``bits(score) << 1 | label`` of non-negative float32 scores.

    One streaming pass over cache-sized chunks: the positives of a chunk (label bit set) give, for the first positive
    of each distinct score v at position j with k positives before it, ``#neg <= v = j - k``; the negatives equal to
    v are the run of key ``v << 1`` just before j, found by a search inside the (cached) chunk. ``n_pos`` (the number
    of set label bits) sizes the outputs up front: no per-chunk lists to concatenate, so the extra memory stays at
    16 bytes per positive pixel on top of the keys.
    """
    n = keys.size
    if n and keys[-1] > _NAN_KEYS:
        raise ValueError("scores contain NaN")
    index = np.int32 if n < 2**31 else np.int64
    bits = np.empty(n_pos, np.uint32)
    neg_at_or_below, tied, rank = (np.empty(n_pos, index) for _ in range(3))
    low = np.empty(min(chunk, n), np.uint32)
    is_pos = np.empty(min(chunk, n), bool)
    seen = 0  # positives before the current chunk
    groups = 0  # distinct positive scores so far
    last_key = -1  # key of the last positive seen: its group may go on in the next chunk
    for start in range(0, n, chunk):
        c = keys[start : start + chunk]
        m = c.size
        np.not_equal(np.bitwise_and(c, 1, out=low[:m]), 0, out=is_pos[:m])  # bool: numpy's fast nonzero
        found = np.flatnonzero(is_pos[:m])
        if not found.size:
            continue
        pos_keys = c[found]
        first = _group_starts(pos_keys)  # within this chunk's positives
        if pos_keys[0] == last_key:  # the previous chunk's last group goes on: not a new group
            first = first[1:]
        seen_before, seen, last_key = seen, seen + found.size, pos_keys[-1]
        if not first.size:
            continue
        out = slice(groups, groups + first.size)
        groups += first.size
        at = found[first]  # local position of each group's first positive
        group_keys = pos_keys[first]
        neg_key = group_keys - np.uint32(1)  # v << 1: the key of a negative scoring v
        np.right_shift(group_keys, 1, out=bits[out])
        rank[out] = first
        rank[out] += seen_before  # positives before the group
        neg_at_or_below[out] = at
        neg_at_or_below[out] += start
        neg_at_or_below[out] -= rank[out]
        t = tied[out]
        t[:] = 0
        has_tie = np.flatnonzero(c[at - 1] == neg_key) if at[0] else np.flatnonzero(c[at[1:] - 1] == neg_key[1:]) + 1
        if has_tie.size:  # negatives tied with v: the run c[run:at] of key v << 1, searched in the cached chunk
            t[has_tie] = at[has_tie] - np.searchsorted(c, neg_key[has_tie], "left")
        if start and keys[start - 1] == neg_key[0] and (at[0] == 0 or c[0] == neg_key[0]):
            # the first group's tied run started in an earlier chunk (rare: a heavily tied score)
            t[0] = start + at[0] - _run_starts(keys, np.array([start - 1]), neg_key[:1])[0]
    if seen != n_pos:
        raise AssertionError(f"{seen} label bits set, {n_pos} expected")
    bits, neg_at_or_below, tied, rank = bits[:groups], neg_at_or_below[:groups], tied[:groups], rank[:groups]
    neg_below = neg_at_or_below - tied
    del tied
    tally = Tally(
        values=bits.view(np.float32),
        n_equal=np.diff(rank, append=n_pos),
        tp=n_pos - rank,
        neg_below=neg_below,
        neg_at_or_below=neg_at_or_below,
        n_pos=n_pos,
        n_neg=n - n_pos,
    )
    tally.edge = _edge_from_keys(keys, tally, fpr_limit)
    return tally


def _edge_from_keys(keys: np.ndarray, t: Tally, fpr_limit: float | None) -> tuple[Any, int, int] | None:
    """``Tally.edge`` from the whole sorted keys and their counts (None when not asked or no negative)."""
    m = _edge_rank(t.n_neg, fpr_limit)
    if m is None:
        return None
    # the m-th smallest negative: no negative sits between positives of one score, so the positives sorted before it
    # are those of the groups with at most m negatives before them
    bits, rank, groups = t.values.view(np.uint32), t.n_pos - t.tp, t.values.size
    g = int(np.searchsorted(t.neg_at_or_below, m, "right"))
    key = keys[m + (int(rank[g]) if g < groups else t.n_pos)]  # a negative: label bit clear, key = v << 1
    g = int(np.searchsorted(bits, key >> np.uint32(1), "left"))
    pos_below = int(rank[g]) if g < groups else t.n_pos
    # keys < v << 1: negatives and positives < v; keys <= v << 1: negatives <= v and positives < v
    return ((key >> np.uint32(1)).view(np.float32).item(), int(np.searchsorted(keys, key, "left")) - pos_below,
            int(np.searchsorted(keys, key, "right")) - pos_below)


def _joined(low: Tally, high: Tally) -> Tally:
    """The tally of two sets of scores where every score of ``low`` is below every score of ``high``."""
    n_pos, n_neg = low.n_pos + high.n_pos, low.n_neg + high.n_neg
    index = np.int32 if n_pos + n_neg < 2**31 else np.int64

    def join(a: np.ndarray, b: np.ndarray, add_a: int = 0, add_b: int = 0) -> np.ndarray:
        out = np.concatenate([a, b]).astype(index, copy=False)
        out[: a.size] += add_a
        out[a.size :] += add_b
        return out

    return Tally(
        values=np.concatenate([low.values, high.values]),
        n_equal=join(low.n_equal, high.n_equal),
        tp=join(low.tp, high.tp, add_a=high.n_pos),  # every positive of high is above low's scores
        neg_below=join(low.neg_below, high.neg_below, add_b=low.n_neg),
        neg_at_or_below=join(low.neg_at_or_below, high.neg_at_or_below, add_b=low.n_neg),
        n_pos=n_pos,
        n_neg=n_neg,
    )


def tally_flat(scores: np.ndarray, labels: np.ndarray) -> Tally:
    """Counts of flat scores against flat bool labels, by the fast path when it applies."""
    if scores.dtype == np.float32:
        keys = _sorted_keys(scores, labels)
        if keys is not None:
            return _tally_keys(keys, int(np.count_nonzero(labels)))
    return _tally_split(scores, labels)


def binary_from_tally(t: Tally) -> dict[str, Any]:
    fp = t.n_neg - t.neg_below
    # U statistic doubled to stay in integers: each positive beats the negatives below it and ties the equal ones
    # (2·below + equal = below + at_or_below). Exact in int64 up to 2·P·N < 9.2e18.
    u2 = int(np.dot(t.n_equal.astype(np.int64), t.neg_below.astype(np.int64) + t.neg_at_or_below))
    f1 = 2.0 * t.tp / (t.tp + fp + t.n_pos)
    best = int(np.argmax(f1))  # values ascend, so argmax picks the lowest threshold among equal maxima
    return {
        "auroc": u2 / (2.0 * t.n_pos * t.n_neg),
        "ap": float(np.dot(t.n_equal, t.tp / (t.tp + fp))) / t.n_pos,
        "f1max": float(f1[best]),
        "threshold": t.values[best].item(),
    }


# --------------------------------------------------------------------------------------------------------------------
# oracle IoU of one image (top-k partition)
# --------------------------------------------------------------------------------------------------------------------


def best_iou_flat(scores: np.ndarray, mask: np.ndarray) -> float | None:
    """:func:`best_iou` of one flat map and its flat bool mask."""
    pos = scores[mask]
    n_pos, n = pos.size, scores.size
    if n_pos == 0:
        return None
    pos.sort()
    starts = _group_starts(pos)
    values, tp = pos[starts], n_pos - starts
    # Only the top k scores are sorted. A threshold t <= the k-th largest score c predicts >= k pixels, so its IoU
    # is <= P / k; thresholds above c see every pixel above c in the top k. If the best IoU above c reaches P / k the
    # rest cannot beat it; otherwise k grows (a poor map), up to the full sort.
    k = _IOU_TOP * n_pos
    while True:
        if k >= n:
            top, cut = np.sort(scores), 0
        else:
            top = np.partition(scores, n - k)[n - k :]
            top.sort()
            cut = int(np.searchsorted(values, top[0], "right"))  # positive scores above c
        if np.isnan(top[-1]):
            raise ValueError("scores contain NaN")
        n_above = top.size - np.searchsorted(top, values[cut:], "left")  # pixels >= v (v > c: all in top)
        iou = tp[cut:] / (n_above - tp[cut:] + n_pos)  # TP / (FP + P)
        best = float(iou.max()) if iou.size else 0.0  # 0 = "predict nothing"
        if k >= n or best * k >= n_pos:
            return best
        k *= _IOU_GROW


# --------------------------------------------------------------------------------------------------------------------
# AUPRO from the counts
# --------------------------------------------------------------------------------------------------------------------


def _region_weights(mask_2d: np.ndarray) -> tuple[np.ndarray, int]:
    """Per positive pixel of one mask (raster order): 1 / size of its 8-connected region; and the region count."""
    from scipy import ndimage

    regions, n_regions = ndimage.label(mask_2d, structure=np.ones((3, 3), bool))  # 8-connectivity, as MVTec/OpenCV
    sizes = np.bincount(regions.ravel())
    return 1.0 / sizes[regions[mask_2d]], int(n_regions)


def _aupro_from_tally(t: Tally, pos_scores: np.ndarray, pos_weights: np.ndarray, n_regions: int,
                      fpr_limit: float) -> float | None:
    """Normalised area under the PRO curve up to ``fpr_limit`` from the counts (derivation in :func:`aupro`)."""
    if t.n_neg == 0 or n_regions == 0:
        return None
    order = np.argsort(pos_scores, kind="stable")
    weight = np.add.reduceat(pos_weights[order], _group_starts(pos_scores[order]))  # Σ 1/|region| per distinct v
    if weight.size != t.values.size:
        raise AssertionError("positive scores of the regions and of the pooled pixels differ")
    limit = fpr_limit * t.n_neg  # L, in negatives
    if t.edge is None:
        raise AssertionError("the tally was made without an FPR limit")
    edge, below, at_or_below = t.edge  # FPR crosses the limit inside the tie group of this negative score
    above_edge = t.n_neg - at_or_below  # a = #neg > edge < L <= a + c
    tied_edge = at_or_below - below  # c = #neg == edge
    # g(v) = ∫_0^L PRO-contribution of a positive at v, in negatives: L minus its mid-rank among the negatives
    # (descending) when v > edge; the interpolated part d²/2c inside the edge's tie group; 0 below.
    g = limit - t.n_neg + 0.5 * (t.neg_at_or_below + t.neg_below.astype(np.float64))
    g[t.values < edge] = 0.0
    d = limit - above_edge
    g[t.values == edge] = d * d / (2.0 * tied_edge)
    return min(1.0, float(np.dot(weight, g)) / (n_regions * limit))  # rounding can pass 1 by an ulp


# --------------------------------------------------------------------------------------------------------------------
# one category: each image read once, the pooled pixels sorted once (two threads when large)
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class Scan:
    image_scores: np.ndarray
    ious: list[float]
    tally: Tally
    aupro: float | None


def _image_ious(flat: np.ndarray, iou_flat: np.ndarray) -> list[float]:
    """Oracle IoU of every image (rows of ``flat``) whose mask row is not empty, in image order."""
    return [best_iou_flat(flat[i], iou_flat[i]) for i in np.flatnonzero(iou_flat.any(axis=1))]  # type: ignore[misc]


def _count_label_bits(keys: np.ndarray) -> int:
    """Number of keys with the label bit set (positives), counted chunk by chunk (no full-size temporary)."""
    bit = np.empty(min(_CHUNK, keys.size), np.uint32)
    count = 0
    for start in range(0, keys.size, _CHUNK):
        c = keys[start : start + _CHUNK]
        count += int(np.count_nonzero(np.bitwise_and(c, 1, out=bit[: c.size])))
    return count


def _sorted_tally(keys: np.ndarray, n_pos: int, fpr_limit: float | None, pool: Any) -> Tally:
    """Sort the keys in place and count them; with a thread ``pool``, in two threads.

    Two threads: an in-place partition at the median key (a selection, ~1/7 of a sort) leaves two halves where
    every key of the lower is <= every key of the upper, so sorting each half in its own thread sorts the whole
    array (numpy sorts without the GIL). The counting pass then splits at the first key of the median's score, so
    both labels of one score fall in one half, and each half is counted in its own thread.
    """
    if pool is None or keys.size < 2:
        keys.sort()
        return _tally_keys(keys, n_pos, fpr_limit)
    mid = keys.size // 2
    keys.partition(mid)
    lower = pool.submit(keys[:mid].sort)
    keys[mid:].sort()
    lower.result()
    cut = int(np.searchsorted(keys, keys[mid] & ~np.uint32(1), "left"))  # key v << 1: the first of score v
    low, high = keys[:cut], keys[cut:]
    counted = pool.submit(lambda: _tally_keys(low, _count_label_bits(low)))
    upper = _tally_keys(high, _count_label_bits(high))
    joined = _joined(counted.result(), upper)
    if joined.n_pos != n_pos:
        raise AssertionError(f"{joined.n_pos} label bits set, {n_pos} expected")
    joined.edge = _edge_from_keys(keys, joined, fpr_limit)
    return joined


def _fill_rows(flat: np.ndarray, labels: np.ndarray, key_rows: np.ndarray, image_scores: np.ndarray,
               rows: range) -> int | None:
    """Keys and image scores (max) of the images ``rows``, each read once while it is in the cache; their number of
    positive pixels, or None when a score has its sign bit set (the keys are then unusable)."""
    n_pos = 0
    for i in rows:
        top = _fill_keys(flat[i], labels[i], key_rows[i])
        if top is None:
            return None
        image_scores[i] = np.uint32(top).view(np.float32)
        n_pos += int(np.count_nonzero(labels[i]))
    return n_pos


def scan_maps(scores: np.ndarray, pixel_labels: np.ndarray, iou_labels: np.ndarray, iou: bool, regions: bool,
          fpr_limit: float) -> Scan:
    """Every per-image step, then one sort of the pooled pixels.

    Per image, read once while it is in the cache: its max (image score) and its keys for the pooled sort. On a
    large category the work runs in two threads (numpy releases the GIL in its loops): the per-image oracle IoUs
    (they only read the inputs) and half of the images' keys beside the other half, then the sort and the counting
    pass in two halves (:func:`_sorted_tally`).
    """
    _check_dtype(scores)
    if regions and not 0 < fpr_limit <= 1:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    n_images = scores.shape[0]
    per_image = (n_images, scores.shape[1] * scores.shape[2])  # explicit: reshape(0, -1) cannot infer -1
    flat, pixel_flat, iou_flat = (a.reshape(per_image) for a in (scores, pixel_labels, iou_labels))
    pool = future = None
    if scores.size >= _THREAD_MIN:
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(2, thread_name_prefix="anoseg-metrics")
        if iou:
            future = pool.submit(_image_ious, flat, iou_flat)
    try:
        keys = n_pos = None
        if scores.dtype == np.float32:
            keys = np.empty(scores.size, np.uint32)
            key_rows, image_scores = keys.reshape(per_image), np.empty(n_images, np.float32)
            half = n_images // 2 if pool is not None else n_images
            other = pool.submit(_fill_rows, flat, pixel_flat, key_rows, image_scores, range(half, n_images)) \
                if pool is not None else None
            counts = [_fill_rows(flat, pixel_flat, key_rows, image_scores, range(half)),
                      other.result() if other is not None else 0]
            if None in counts:
                keys = key_rows = None  # a negative score: the generic path sorts by value
            else:
                n_pos = sum(counts)
        if keys is None:
            image_scores = flat.max(axis=1) if per_image[1] else np.zeros(n_images, scores.dtype)
            n_pos = int(np.count_nonzero(pixel_labels))
        limit = fpr_limit if regions else None
        if keys is not None:
            tally = _sorted_tally(keys, n_pos, limit, pool)
            del keys, key_rows  # the sorted copy is done with: free it before the metrics' temporaries
        else:
            tally = _tally_split(scores.ravel(), pixel_labels.ravel(), limit)
        if n_images and np.isnan(image_scores).any():
            raise ValueError("scores contain NaN")
        area = _category_aupro(flat, pixel_labels, pixel_flat, tally, fpr_limit) if regions else None
        ious = future.result() if future is not None else (_image_ious(flat, iou_flat) if iou else [])
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return Scan(image_scores, ious, tally, area)


def _category_aupro(flat: np.ndarray, pixel_labels: np.ndarray, pixel_flat: np.ndarray, tally: Tally,
                    fpr_limit: float) -> float | None:
    """AUPRO from the pooled counts and each defective image's regions (:func:`aupro`)."""
    pos_scores: list[np.ndarray] = [np.empty(0, flat.dtype)]
    pos_weights: list[np.ndarray] = [np.empty(0)]
    n_regions = 0
    for i in np.flatnonzero(pixel_flat.any(axis=1)):
        weights, count = _region_weights(pixel_labels[i])
        pos_scores.append(flat[i][pixel_flat[i]])
        pos_weights.append(weights)
        n_regions += count
    return _aupro_from_tally(tally, np.concatenate(pos_scores), np.concatenate(pos_weights), n_regions, fpr_limit)
