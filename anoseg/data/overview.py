"""What ``anoseg init DIR`` and ``anoseg prepare --dry-run`` print: what was found and the split that would result.

Nothing is written: the tables come from the manifest rows and data report that ``build_manifest`` returns.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

MAX_PROBLEMS = 10


def first_problems(report: dict[str, Any], limit: int = MAX_PROBLEMS) -> list[str]:
    """Up to ``limit`` lines ``severity: message`` from a data report's issues, errors first, then warnings (info
    notes are not problems).

    Example:
        >>> first_problems({"issues": {"image_without_mask": {"severity": "error", "examples": [
        ...     {"path": "a/1.png", "message": "no mask for a/1.png"}]}}})
        ['error: no mask for a/1.png']
    """
    lines = []
    for severity in ("error", "warning"):
        for entry in report.get("issues", {}).values():
            if entry["severity"] == severity:
                lines += [f"{severity}: {example['message']}" for example in entry["examples"]]
    return lines[:limit]


def mask_places(frame: Any, data_root: str | Path) -> dict[tuple[str, str], str]:
    """(category, defect) → where its real masks were found: ``beside the images``, a folder relative to
    ``data_root`` (the first mask's), or ``none (image level)``; from manifest rows (a DataFrame)."""
    places: dict[tuple[str, str], str] = {}
    rows = frame[(frame["label"] == 1) & (frame["source"] == "real")]
    for (category, defect), group in rows.groupby(["category", "defect"], sort=False):
        masks = [m for m in group["mask"] if m]
        if not masks:
            places[(category, defect)] = "none (image level)"
            continue
        image, mask = next((i, m) for i, m in zip(group["image"], group["mask"], strict=True) if m)
        if Path(mask).parent == Path(image).parent:
            places[(category, defect)] = "beside the images"
        else:
            places[(category, defect)] = os.path.relpath(Path(mask).parent, os.path.abspath(data_root))
    return places


def print_overview(report: dict[str, Any], console: Any, title: str, frame: Any = None) -> None:
    """Print categories, defect types with their counts, split and mask folder, the good-image split and the first
    problems.

    ``report`` is a data report of ``anoseg.data.build.build_manifest`` (built leniently so that every problem is
    listed) and ``frame`` its manifest rows (for the mask column; optional); ``console`` a rich console.
    """
    from rich.table import Table

    places = mask_places(frame, report["data_root"]) if frame is not None else {}
    view = Table(title=f"{title}: what was found (nothing written)")
    for column in ("category", "defect type", "images", "train", "test", "masks", "note"):
        view.add_column(column, justify="right" if column in ("images", "train", "test") else "left")
    for category in report["categories"]:
        counts = report["counts"].get(category, {})
        good_train = counts.get("train/real", 0) - sum(
            d["train"] for d in report["defects"].get(category, {}).values())
        good_test = counts.get("test/good", 0)
        view.add_row(category, "good", str(good_train + good_test), str(good_train), str(good_test), "", "")
        for defect, entry in report["defects"].get(category, {}).items():
            notes = []
            if places.get((category, defect), "").startswith("none"):
                notes.append("test only")
            elif entry.get("fixed_split"):
                notes.append("split fixed by the data")
            if entry["dropped"]:
                notes.append(f"{entry['dropped']} dropped")
            view.add_row("", defect, str(entry["n"]), str(entry["train"]), str(entry["test"]),
                         places.get((category, defect), ""), ", ".join(notes))
        for defect, entry in report["generated"].get(category, {}).items():
            view.add_row("", f"{defect} (generated)", str(entry["n"]), str(entry["pairs"]), "0", "", "")
    console.print(view)
    problems = first_problems(report)
    if problems:
        total = sum(e["count"] for e in report["issues"].values() if e["severity"] != "info")
        console.print(f"[bold]first problems[/bold] ({total} in all; errors stop `prepare` unless --lenient):",
                      highlight=False)
        for line in problems:
            console.print(f"  {line}", highlight=False, soft_wrap=True)
    else:
        console.print("no problems found", highlight=False)
