"""predict as a line: batched forward, decoding workers and the writer pool give exactly the one-image-at-a-time
result; --no-overlays writes masks only; the overlay's colour table and outline equal matplotlib's and scipy's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from anoseg.constants import CHECKPOINT_FORMAT
from anoseg.engine.checkpoint import save_checkpoint
from anoseg.engine.predict import predict
from anoseg.engine.visual import heatmap, outline
from anoseg.models import create_model


@pytest.fixture(scope="module")
def line(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("line")
    torch.manual_seed(0)
    meta = {"dataset": "t", "task": "anomaly", "generator": "none", "trained_on": "all", "categories": ["a"],
            "image_size": [64, 64], "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
            "protocol": "clean", "seed": 0, "class_names": ["good", "defect"]}
    save_checkpoint(root / "run" / "last.pt", {"format": CHECKPOINT_FORMAT, "model": "lfd", "num_classes": 2,
                                               "epoch": 1,
                                               "iteration": 1, "state_dict": create_model("lfd").state_dict(),
                                               "optimizer": {}, "meta": meta, "history": []})
    rng = np.random.default_rng(0)
    images = root / "images"
    for i in range(7):  # 7 = two batches of 3 and a last batch of 1; sizes differ, so originals cannot be stacked
        folder = images / ("x" if i % 2 else "y")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (48 + 8 * i, 80 - 4 * i, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (images / "y" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return {"checkpoint": root / "run" / "last.pt", "images": images, "root": root}


def _run(line: dict, name: str, **options) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    out = line["root"] / name
    predict([line["images"]], checkpoint=line["checkpoint"], out=out, device="cpu", threshold=0.5, **options)
    table = pd.read_csv(out / "predictions.csv")
    return table, {Path(m).relative_to(out).as_posix(): np.asarray(Image.open(m)) for m in table["mask"]}


def test_batches_workers_and_writer_pool_equal_one_image_at_a_time(line):
    one, one_masks = _run(line, "one", batch_size=1, workers=0)
    many, many_masks = _run(line, "many", batch_size=3, workers=2)
    assert len(one) == 7 and list(one["image"]) == list(many["image"])  # input order, broken file skipped
    assert np.allclose(one["score"], many["score"], rtol=0, atol=1e-6)
    assert one_masks.keys() == many_masks.keys()
    for key, mask in one_masks.items():
        assert np.array_equal(mask, many_masks[key])
    assert 0 < sum((m > 0).sum() for m in one_masks.values()) < sum(m.size for m in one_masks.values())
    assert len(pd.read_csv(line["root"] / "many" / "skipped.csv")) == 1
    assert len(list((line["root"] / "many").rglob("*_overlay.jpg"))) == 7


def test_no_overlays_writes_masks_only(line):
    table, masks = _run(line, "masks_only", batch_size=4, overlays=False)
    assert len(masks) == 7 and "overlay" not in table.columns
    assert not list((line["root"] / "masks_only").rglob("*_overlay.jpg"))


def test_heatmap_and_outline_equal_matplotlib_and_scipy():
    from matplotlib import colormaps
    from scipy.ndimage import binary_erosion

    rng = np.random.default_rng(1)
    edges = np.array([[0, 1, 1.5, -0.2, 0.99999994, 1 / 256, 255 / 256, np.nextafter(np.float32(1 / 256), 0)]],
                     np.float32)
    for scores in (rng.random((40, 50)).astype(np.float32), edges, rng.random((9, 7))):
        expected = (colormaps["jet"](np.clip(scores, 0.0, 1.0))[..., :3] * 255).astype(np.uint8)
        assert np.array_equal(heatmap(scores), expected)
    for fraction in (0.3, 0.7, 1.0):
        mask = rng.random((30, 41)) < fraction
        assert np.array_equal(outline(mask), mask & ~binary_erosion(mask, border_value=0))
