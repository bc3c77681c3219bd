"""State-dict key renaming shared by every weight-file layout (authors' checkpoints, torchvision, mmseg)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TypeVar

V = TypeVar("V")


def rename_keys(state: Mapping[str, V], rules: Sequence[tuple[str, str]]) -> dict[str, V]:
    """Apply the first matching regex substitution of ``rules`` to every key; keys matching none are kept.

    Example:
        >>> rename_keys({"conv1.0.weight": 1, "fc.bias": 2}, [(r"^conv1\\.0\\.", "stem.0.conv.")])
        {'stem.0.conv.weight': 1, 'fc.bias': 2}
    """
    compiled = [(re.compile(pattern), repl) for pattern, repl in rules]
    out: dict[str, V] = {}
    for key, value in state.items():
        for pattern, repl in compiled:
            new, hits = pattern.subn(repl, key, count=1)
            if hits:
                key = new
                break
        out[key] = value
    return out


def strip_prefix(state: Mapping[str, V], prefix: str) -> dict[str, V]:
    """Keep only the keys under ``prefix``, without it, when any key has it (whole-segmentor checkpoints).

    Example:
        >>> strip_prefix({"backbone.stem.0.weight": 1, "decode_head.x": 2}, "backbone.")
        {'stem.0.weight': 1}
    """
    if any(k.startswith(prefix) for k in state):
        return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    return dict(state)
