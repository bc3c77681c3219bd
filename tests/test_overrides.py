"""One validated way to change a recipe: a command-line option (``train --lr``), a sweep's ``--set`` and a sweep file
are checked exactly as a recipe file is, and a valid change gives the recipe a file with that value would give.

The stages are replaced by recorders in the command-line cases, so a refused value is refused before any stage runs
(and nothing here trains).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from anoseg import stages
from anoseg.cli import main
from anoseg.errors import AnosegError
from anoseg.recipes import load_recipe

DEMO = Path(__file__).resolve().parent.parent / "recipes" / "demo.yaml"


@pytest.fixture
def calls(monkeypatch) -> list[tuple[str, object]]:
    """Replace every ``stages.run_*`` by a recorder of (stage name, job)."""
    seen: list[tuple[str, object]] = []
    for name in [n for n in dir(stages) if n.startswith("run_")]:
        monkeypatch.setattr(stages, name, lambda job, _name=name: seen.append((_name, job)))
    return seen


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def refused(result, *fragments: str) -> str:
    """The one error line of a refused command (exit 2, no traceback), checked to hold every fragment."""
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output and "internal error" not in result.output
    line = " ".join(lines[0].split())
    for fragment in fragments:
        assert re.search(fragment, line), line
    return line


def demo_with(tmp_path: Path, *lines: str) -> Path:
    """recipes/demo.yaml with some of its lines replaced (``"  lr: 0.02"``: a train setting, by its indentation)."""
    text = DEMO.read_text(encoding="utf-8")
    for line in lines:
        key = line.split(":")[0]
        changed = re.sub(rf"^{re.escape(key)}:.*$", lambda _, new=line: new, text, count=1, flags=re.M)
        assert changed != text, line
        text = changed
    path = tmp_path / "demo.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def yaml_error(path: Path) -> str:
    with pytest.raises(AnosegError) as caught:
        load_recipe(path)
    return str(caught.value)


# ---- the command line: every option that changes the recipe ---------------------------------------------------------

TRAIN = ["train", "--model", "lfd", "--device", "cpu"]

#: (case, options, fragments of the one error line): options that reached a stage unchecked before.
CLI_CASES = [
    # the recipe's min_lr is 1e-5: the cosine would rise from 1e-6 to 1e-5 (issue 23, kind 8)
    ("train-lr-below-min-lr", [*TRAIN, "--lr", "1e-6"], [r"train\.lr=1e-06", r"train\.min_lr \(1e-05\) must not "
                                                         r"exceed train\.lr \(1e-06\)"]),
    ("train-lr-below-min-lr-resume", [*TRAIN, "--lr", "5e-6", "--resume", "--epochs", "20"], [r"train\.min_lr"]),
    ("train-augment-empty-list", [*TRAIN, "--augment", ","], [r"--augment: empty list"]),
]


@pytest.mark.parametrize(("args", "fragments"), [case[1:] for case in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_overrides_are_refused_as_the_recipe_file_refuses_them(calls, args, fragments):
    refused(invoke(*args), *fragments)
    assert calls == []  # refused before any stage is called


def test_train_lr_below_min_lr_reads_as_the_same_value_in_yaml(calls, tmp_path):
    from_cli = refused(invoke(*TRAIN, "--lr", "1e-6"), r"train\.min_lr")
    from_yaml = yaml_error(demo_with(tmp_path, "  lr: 1.0e-6"))
    problem = "train.min_lr (1e-05) must not exceed train.lr (1e-06)"
    assert from_cli.endswith(problem) and from_yaml.endswith(problem)
    # an exponent without a dot is a number in a recipe file as well (YAML 1.1 alone reads `1e-6` as a string)
    assert yaml_error(demo_with(tmp_path, "  lr: 1e-6")).endswith(problem)


def test_the_lr_at_min_lr_is_accepted(calls):
    result = invoke(*TRAIN, "--lr", "1e-5")
    assert result.exit_code == 0, result.output
    assert calls[0][1].recipe.train.lr == 1e-5


def test_cli_options_give_the_recipe_a_file_with_those_values_gives(calls, tmp_path):
    result = invoke(*TRAIN, "--lr", "0.02", "--image-size", "64", "64", "--augment", "hflip,vflip", "--epochs", "3",
                    "--batch-size", "2", "--workers", "0", "--generator", "perlin")
    assert result.exit_code == 0, result.output
    expected = load_recipe(demo_with(tmp_path, "  lr: 0.02", "image_size: 64", "  augment: [hflip, vflip]",
                                     "  epochs: 3", "  batch_size: 2", "generator: perlin",
                                     "  checkpoint_every: 4\n  workers: 0"))
    assert calls[0][1].recipe == expected


# ---- one override function: dotted keys, validated ------------------------------------------------------------------

@pytest.mark.parametrize(("key", "value", "line"), [
    ("train.lr", 0.02, "  lr: 0.02"),
    ("train.lr", 1e-4, "  lr: 1e-4"),
    ("image_size", 64, "image_size: 64"),
    ("image_size", [64, 96], "image_size: [64, 96]"),
    ("train.augment", ["hflip"], "  augment: [hflip]"),
    ("train.eval_epoch", 8, "  eval_epoch: 8"),
    ("train.class_weights", None, "  class_weights: null"),
    ("data_root", "elsewhere/mvtec", "data_root: elsewhere/mvtec"),
    ("categories", ["disk"], "categories: [disk]"),
    ("train", {"lr": 0.03, "epochs": 2}, "  lr: 0.03\n  epochs: 2"),  # a mapping changes only its keys
])
def test_a_dotted_override_equals_the_same_value_written_in_yaml(tmp_path, key, value, line):
    base = load_recipe("demo")
    overridden = base.override({key: value})
    written = load_recipe(demo_with(tmp_path, *line.split("\n")))
    assert overridden == written and overridden != base
    assert overridden.source == base.source  # where the settings came from; not part of the comparison


@pytest.mark.parametrize(("key", "value", "fragments"), [
    ("train.lr", 1e-6, [r"train\.min_lr"]),
    ("train.lr", float("inf"), [r"train\.lr: must be a finite number"]),
    ("train.weight_decay", float("inf"), [r"train\.weight_decay: must be a finite number"]),
    ("train.epochs", 0, [r"train\.epochs: input should be greater than or equal to 1"]),
    ("image_size", [100, 100], [r"multiples of 32"]),
    ("train.epochz", 3, [r"unknown setting\(s\) train\.epochz"]),
    ("train.lr.x", 3, [r"train\.lr\.x"]),
    ("num_classes", 3, [r"class_names has 2 names for 3 classes"]),
])
def test_an_override_is_refused_with_the_message_naming_the_key(key, value, fragments):
    with pytest.raises(AnosegError) as caught:
        load_recipe("demo").override({key: value})
    for fragment in fragments:
        assert re.search(fragment, str(caught.value)), caught.value
    assert "\n" not in str(caught.value)


# ---- sweep: --set and the options --------------------------------------------------------------------------------

SWEEP = ["sweep", "--models", "lfd", "--generators", "seas", "--dry-run"]

#: (case, options, fragments of the one error line)
SWEEP_CASES = [
    ("set-lr-below-min-lr", ["--set", "train.lr=1e-6"], [r"train\.min_lr \(1e-05\) must not exceed train\.lr"]),
    ("set-lr-infinite", ["--set", "train.lr=.inf"], [r"train\.lr: must be a finite number"]),
    ("set-weight-decay-infinite", ["--set", "train.weight_decay=.inf"], [r"train\.weight_decay: must be a finite"]),
    ("set-grid-axis-bad-value", ["--set", "train.lr=0.01", "--set", "train.lr=1e-6"], [r"train\.min_lr"]),
    ("seed-negative", ["--seed", "-1"], [r"seeds\.0: input should be greater than or equal to 0"]),
    ("seed-too-large", ["--seed", str(2**32)], [r"seeds\.0: input should be less than or equal to"]),
    ("name-escapes-the-records", ["--name", "../elsewhere"], [r"name: '\.\./elsewhere' must be a plain folder name"]),
    ("device-unknown", ["--device", "gpu"], [r"device: 'gpu' is not a device"]),
]


@pytest.mark.parametrize(("options", "fragments"), [case[1:] for case in SWEEP_CASES], ids=[c[0] for c in SWEEP_CASES])
def test_sweep_options_are_validated_like_a_recipe(tmp_path, options, fragments):
    result = invoke(*SWEEP, "--output", tmp_path / "out", *options)
    refused(result, *fragments)
    assert not (tmp_path / "out").exists()


def test_a_valid_set_gives_the_recipe_a_file_with_that_value_gives(tmp_path):
    from anoseg.sweep import SweepSpec, expand, write_recipes

    settings = {"train.lr": 1e-4, "image_size": 64, "train.augment": ["hflip"]}
    plan = expand(SweepSpec(name="s", recipe=str(DEMO), models=("lfd",), generators=("seas",), settings=settings),
                  tmp_path / "out")
    write_recipes(plan)
    derived = load_recipe(plan.variants[0].recipe_file)  # what each cell's `anoseg train --recipe` reads
    expected = load_recipe(demo_with(tmp_path, "  lr: 1e-4", "image_size: 64", "  augment: [hflip]"))
    assert derived == expected == load_recipe(DEMO).override(settings)
    result = invoke(*SWEEP, "--recipe", DEMO, "--output", tmp_path / "out2", "--set", "train.lr=1e-4")
    assert result.exit_code == 0, result.output  # `1e-4` typed on the command line is the number


# ---- sweep files: each key checked, the error naming it (issue 23, kind 7) ------------------------------------------

#: (case, the sweep file's lines beyond `recipe: demo`, the key the error must name)
SWEEP_FILE_CASES = [
    ("models-a-word", "models: lfd\ngenerators: [seas]", "models"),
    ("models-a-number", "models: 5\ngenerators: [seas]", "models"),
    ("models-an-empty-name", "models: ['']\ngenerators: [seas]", r"models\.0"),
    ("generators-a-path", "models: [lfd]\ngenerators: ./data/generated/seas", "generators"),
    ("generators-a-number", "models: [lfd]\ngenerators: 3", "generators"),
    ("categories-a-word", "models: [lfd]\ngenerators: [seas]\ncategories: all", "categories"),
    ("seeds-a-string", "models: [lfd]\ngenerators: [seas]\nseeds: '01'", "seeds"),
    ("seeds-a-number", "models: [lfd]\ngenerators: [seas]\nseeds: 7", "seeds"),
    ("seed-a-string", "models: [lfd]\ngenerators: [seas]\nseeds: ['0']", r"seeds\.0"),
    ("seed-a-fraction", "models: [lfd]\ngenerators: [seas]\nseeds: [1.5]", r"seeds\.0"),
    ("seed-a-flag", "models: [lfd]\ngenerators: [seas]\nseeds: [true]", r"seeds\.0"),
    ("seed-negative", "models: [lfd]\ngenerators: [seas]\nseeds: [-1]", r"seeds\.0"),
    ("name-a-number", "models: [lfd]\ngenerators: [seas]\nname: 5", "name"),
    ("name-a-path", "models: [lfd]\ngenerators: [seas]\nname: a/b", "name"),
    ("recipe-a-number", "models: [lfd]\ngenerators: [seas]\nrecipe: 5", "recipe"),
    ("device-unknown", "models: [lfd]\ngenerators: [seas]\ndevice: gpu", "device"),
    ("device-a-number", "models: [lfd]\ngenerators: [seas]\ndevice: 0", "device"),
    ("backbone-weights-a-list", "models: [lfd]\ngenerators: [seas]\nbackbone_weights: [none]", "backbone_weights"),
    ("save-scores-a-word", "models: [lfd]\ngenerators: [seas]\nsave_scores: 'no'", "save_scores"),
    ("set-a-list", "models: [lfd]\ngenerators: [seas]\nset: [train.epochs]", "set"),
    ("set-a-bad-value", "models: [lfd]\ngenerators: [seas]\nset: {train.lr: 1e-6}", r"train\.min_lr"),
    ("grid-a-number", "models: [lfd]\ngenerators: [seas]\ngrid: {train.lr: 0.01}", r"grid\.train\.lr"),
    ("grid-an-empty-list", "models: [lfd]\ngenerators: [seas]\ngrid: {train.lr: []}", r"grid\.train\.lr"),
    ("grid-a-list", "models: [lfd]\ngenerators: [seas]\ngrid: [train.lr]", "grid"),
    ("unknown-key", "models: [lfd]\ngenerators: [seas]\nseed: [0]", r"unknown key\(s\) seed"),
]


@pytest.mark.parametrize(("body", "key"), [case[1:] for case in SWEEP_FILE_CASES],
                         ids=[case[0] for case in SWEEP_FILE_CASES])
def test_sweep_file_values_are_validated_naming_the_key(tmp_path, body, key):
    sweep_file = tmp_path / "grid.yaml"
    sweep_file.write_text(f"recipe: demo\n{body}\n", encoding="utf-8")
    result = invoke("sweep", sweep_file, "--output", tmp_path / "out", "--dry-run")
    where = "recipe demo with train.lr=1e-06: " if key == r"train\.min_lr" else f"sweep {sweep_file}: "
    assert refused(result, rf"\b{key}\b").startswith(f"error: {where}")
    assert not (tmp_path / "out").exists()


def test_a_valid_sweep_file_with_every_key_expands(tmp_path):
    sweep_file = tmp_path / "grid.yaml"
    sweep_file.write_text("name: g\nrecipe: demo\nmodels: [lfd]\ngenerators: [seas]\ncategories: [disk]\n"
                          "seeds: [0, 1]\nset: {train.epochs: 2}\ngrid: {train.lr: [0.01, 1e-3]}\ndevice: cpu\n"
                          "backbone_weights: none\nsave_scores: false\n", encoding="utf-8")
    result = invoke("sweep", sweep_file, "--output", tmp_path / "out", "--dry-run")
    assert result.exit_code == 0, result.output
    cells = [line for line in result.output.splitlines() if line.startswith("[")]
    assert len(cells) == 4 and "[train.lr=0.001]" in cells[-1]
    assert not any("--save-scores" in line for line in result.output.splitlines())


# ---- a command's options reach the engine job by name, none dropped ---------------------------------------------

def _non_default(field) -> object:
    """A value for ``field`` that differs from its default (so a dropped field shows)."""
    if field.type in ("bool",):
        return True
    if field.name in ("device",):
        return "cpu"
    return {"output": Path("elsewhere"), "seed": 7, "devices": 2, "precision": "32-true", "backbone_weights": "x.pt",
            "epochs": 9, "logger": "tensorboard", "epoch": 3, "protocol": "lfd-compat", "overlays": 0,
            "resolution": "native"}.get(field.name)


@pytest.mark.parametrize("command", ["train", "eval"])
def test_every_option_of_a_command_reaches_its_engine_job(command):
    import dataclasses

    from anoseg import jobs
    from anoseg.engine.runs import EvalJob
    from anoseg.engine.train import TrainJob

    kind, engine_kind = {"train": (jobs.TrainRunsJob, TrainJob), "eval": (jobs.EvalRunsJob, EvalJob)}[command]
    recipe = load_recipe("demo").override({"generator": "perlin"})
    given = {f.name: _non_default(f) for f in dataclasses.fields(kind)
             if f.name not in ("recipe", "model", "categories") and _non_default(f) is not None}
    if command == "train":
        given["fresh"] = False  # --resume with --fresh is refused
    job = kind(recipe, "lednet", categories=("disk", "mesh"), **given)
    runs = stages.engine_jobs(engine_kind, job, **({"resume_epochs": job.epochs} if command == "train" else {}))
    assert [r.category for r in runs] == ["disk", "mesh"] and all(r.generator == "perlin" for r in runs)
    shared = {f.name for f in dataclasses.fields(engine_kind)} & set(given)
    assert len(shared) >= (10 if command == "train" else 7)
    for run in runs:
        assert (run.recipe, run.model) == (recipe, "lednet")
        assert {name: getattr(run, name) for name in shared} == {name: given[name] for name in shared}


def test_engine_jobs_check_their_own_values():
    from anoseg.engine.runs import EvalJob
    from anoseg.engine.train import TrainJob

    recipe = load_recipe("demo")
    with pytest.raises(AnosegError, match="--resume and --fresh contradict"):
        TrainJob(recipe, "lfd", resume=True, fresh=True)
    with pytest.raises(AnosegError, match="--protocol must be one of"):
        EvalJob(recipe, "lfd", protocol="strict")
