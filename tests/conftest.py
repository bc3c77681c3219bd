"""Shared by the CLI safety tests: one tiny pipeline (64 px, category disk, one epoch of LFD) built once."""

from __future__ import annotations

import os

# Under pytest-xdist every worker process would otherwise run torch (OpenMP) with one thread per core: N workers ×
# N threads on N cores, whose spinning OpenMP threads made training tests 10-25× slower. Each worker gets its share
# of the cores, before anything imports torch; the CLI subprocesses the tests start inherit it.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT") and "OMP_NUM_THREADS" not in os.environ:
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    os.environ["OMP_NUM_THREADS"] = str(max(1, _cores // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))

from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from anoseg.cli import main
from anoseg.data.synth import make_demo_data

#: Test groups by the part of anoseg they exercise, so a developer runs the part they change (``pytest -m export``,
#: ``-m "not train"``): each group is the test files that drive that part end to end, or tests named after it.
#: ``slow``, ``parity``, ``numerics`` and ``gpu`` are set in the test modules themselves.
GROUPS = {
    "train": ("tests/engine/test_train_eval.py", "tests/engine/test_train_speed.py", "tests/engine/test_parity.py",
              "tests/engine/test_beyond_options.py", "tests/engine/test_pipeline_models.py",
              "tests/data/test_layouts_pipeline.py", "tests/gpu/test_gpu.py"),
    "export": ("tests/test_export.py",),
}


def pytest_collection_modifyitems(config, items) -> None:
    """Mark each test with its groups (``GROUPS``): by file, and ``export`` also by name."""
    root = Path(str(config.rootpath))
    for item in items:
        where = Path(str(item.path)).relative_to(root).as_posix()
        for group, files in GROUPS.items():
            if where in files or (group == "export" and "export" in item.name):
                item.add_marker(group)

RECIPE = """\
name: demo
layout: mvtec_ad
data_root: {data}/mvtec
generated_root: {data}/generated
generator: seas
categories: [weave, disk, mesh]
image_size: [64, 64]
train:
  epochs: {epochs}
  eval_epoch: null
  checkpoint_every: 1
  batch_size: 4
  lr: 0.01
  ohem_min_kept: 1000
  workers: 0
"""


@dataclass(frozen=True)
class Pipeline:
    data: Path
    out: Path
    recipe: Path


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def offline(tmp_path, monkeypatch) -> list[str]:
    """An empty torch hub cache, no permission to download, and a network that records (and refuses) every attempt:
    the list of URLs tried."""
    import torch

    from anoseg.models.weights import DOWNLOAD_ENV

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    monkeypatch.delenv(DOWNLOAD_ENV, raising=False)
    monkeypatch.setattr("anoseg.log._said", set())
    attempts: list[str] = []

    def no_network(url, *args, **kwargs):
        attempts.append(url)
        raise OSError("offline")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return attempts


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory) -> Pipeline:
    root = tmp_path_factory.mktemp("pipeline")
    make_demo_data(root / "data", seed=0)
    recipe = root / "demo.yaml"
    recipe.write_text(RECIPE.format(data=root / "data", epochs=1))
    out = root / "out"
    for args in (["prepare", "--recipe", str(recipe), "--output", str(out)],
                 ["train", "--recipe", str(recipe), "--model", "lfd", "--category", "disk", "--output", str(out),
                  "--backbone-weights", "none", "--device", "cpu"],
                 ["eval", "--recipe", str(recipe), "--model", "lfd", "--category", "disk", "--output", str(out),
                  "--device", "cpu", "--overlays", "1"]):
        result = invoke(*args)
        assert result.exit_code == 0, result.output
    return Pipeline(root / "data", out, recipe)
