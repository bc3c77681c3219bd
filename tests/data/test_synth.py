"""The built-in demo dataset: determinism, layout and the table ``anoseg prepare`` prints for it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anoseg.data import synth
from anoseg.data.build import build_manifest
from anoseg.data.manifest import count_table
from anoseg.data.synth import make_demo_data


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("demo")
    return root, make_demo_data(root, seed=0)


def test_same_seed_same_bytes_other_seed_other_bytes(demo, tmp_path):
    root, _ = demo
    again = make_demo_data(tmp_path / "again", seed=0)
    assert again["data_root"] == tmp_path / "again" / "mvtec"
    first, second = _digests(root), _digests(tmp_path / "again")
    assert len(first) > 300 and first == second
    make_demo_data(tmp_path / "other", seed=1)
    third = _digests(tmp_path / "other")
    assert third.keys() == first.keys()
    assert sum(first[k] != third[k] for k in first) > 0.95 * len(first)


def test_demo_files(demo):
    root, paths = demo
    data, gen = paths["data_root"], paths["generated_root"]
    assert gen == root / "generated" / "seas"
    assert Image.open(data / "mesh/train/good/000.png").mode == "L"
    assert Image.open(data / "disk/test/crack/000.png").size == (160, 160)
    image, mask = Image.open(gen / "weave/scratch/image/000.png"), Image.open(gen / "weave/scratch/mask/000.png")
    assert image.size == mask.size == (192, 192) and image.mode == "RGB" and mask.mode == "L"
    masks = [np.asarray(Image.open(p)) for p in sorted(data.glob("*/ground_truth/*/*_mask.png"))]
    assert all(set(np.unique(m)) <= {0, 255} for m in masks) and all(m.any() for m in masks)
    areas = np.array([(m > 0).mean() for m in masks])
    assert areas.min() < 0.003 and areas.max() > 0.01  # thin scratches and larger blobs
    counts = [len(list(d.glob("*.png"))) for d in data.glob("*/test/*") if d.name != "good"]
    assert len(counts) == 8 and all(6 <= n <= 9 for n in counts)


@pytest.mark.parametrize("painter", [synth.paint_scratch, synth.paint_crack, synth.paint_hole, synth.paint_blob,
                                     synth.paint_missing_wire, synth.paint_stain])
def test_painters_change_exactly_the_masked_pixels(painter):
    for seed in range(5):
        rng = np.random.default_rng(seed)
        render = synth._render_mesh if painter is synth.paint_missing_wire else synth._render_disk
        image, product = render(rng, 160)
        before = image.copy()
        mask = painter(image, rng, 1.0, product)
        change = np.abs(image - before).max(axis=2)
        assert mask.any() and not (mask & ~product.region).any()
        assert np.median(change[mask]) >= 8  # visible, though sometimes subtle
        if painter is synth.paint_stain:  # soft edge: outside the mask at most half the stain's contrast
            assert change[~mask].max() <= 0.5 * change[mask].max() + 1e-3
        else:
            assert change[~mask].max() == 0


def test_prepare_demo_count_table(demo):
    _, paths = demo
    df, report = build_manifest(dataset="demo", layout="mvtec_ad", data_root=paths["data_root"], categories=None,
                                generated_root=paths["generated_root"], generator="seas", verbose=False)
    table = count_table(df)
    # hand count: train/real = 12 good + Σ⌊n/3⌋; test/real = 8 good + Σ(n − ⌊n/3⌋); 10 generated pairs per type
    # weave n = 7, 8, 6; disk n = 9, 7, 6; mesh n = 6, 8
    assert table.to_dict("index") == {
        "disk": {"train/real": 12 + 7, "train/generated": 30, "test/real": 8 + 15},
        "mesh": {"train/real": 12 + 4, "train/generated": 20, "test/real": 8 + 10},
        "weave": {"train/real": 12 + 6, "train/generated": 30, "test/real": 8 + 15},
        "total": {"train/real": 53, "train/generated": 80, "test/real": 64},
    }
    assert report["issues"]["empty_generated_mask"]["count"] == 3
    assert {k for k, v in report["issues"].items() if v["severity"] != "info"} == set()
    assert set(df[df.category == "mesh"].orig_mode) == {"L", "RGB"}  # real mesh L, generated RGB (as SeaS)
