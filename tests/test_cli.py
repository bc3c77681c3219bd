"""The command line: help everywhere, instant start, and user errors as one red line with exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from anoseg.cli import main

COMMANDS = ["synth", "generate", "prepare", "train", "eval", "predict", "report", "bench", "export", "models"]


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_help_lists_every_stage_and_each_command_has_help():
    result = run("--help")
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output
        sub = run(command, "--help")
        assert sub.exit_code == 0 and "Usage:" in sub.output, command


def test_help_imports_no_heavy_package():
    code = ("import sys; from click.testing import CliRunner; from anoseg.cli import main; "
            "CliRunner().invoke(main, ['train', '--help']); "
            "print(sorted(m for m in ('torch', 'anomalib', 'pandas', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())
    for fragment in fragments:
        assert fragment in text, result.output


@pytest.mark.parametrize(("args", "fragments"), [
    (["prepare", "--recipe", "nope"], ["unknown recipe 'nope'", "mvtec_ad"]),
    (["train", "--model", "nonet", "--output", "{tmp}"], ["unknown model 'nonet'", "lfd"]),
    (["eval", "--model", "lfd", "--output", "{tmp}"], ["run `anoseg train` first"]),
    (["predict", "--checkpoint", "{tmp}/none.pt", "{tmp}"], ["checkpoint not found"]),
    (["predict", "{tmp}"], ["exactly one of --checkpoint and --model-file"]),
    (["report", "--output", "{tmp}"], ["nothing to report"]),
    (["bench", "--model", "lfd", "--size", "100", "100", "--output", "{tmp}"], ["multiples of 32"]),
    (["export", "--checkpoint", "{tmp}/none.pt"], ["checkpoint not found"]),
    (["generate", "--method", "perlin", "--data-root", "{tmp}/absent", "--out", "{tmp}/gen"], ["absent"]),
])
def test_user_errors_are_one_line_with_exit_code_2(tmp_path, args, fragments):
    one_line_error(run(*[a.replace("{tmp}", str(tmp_path)) for a in args]), *fragments)


def test_train_without_a_manifest_says_to_prepare(tmp_path):
    one_line_error(run("train", "--model", "lfd", "--output", str(tmp_path), "--backbone-weights", "none"),
                   "manifest not found", "anoseg prepare")


def test_failed_prepare_leaves_the_existing_manifest_untouched(tmp_path):
    data = tmp_path / "data"
    assert run("synth", "--out", str(data)).exit_code == 0
    args = ["prepare", "--recipe", "demo", "--data-root", str(data / "mvtec"), "--generated",
            str(data / "generated" / "seas"), "--output", str(tmp_path / "out")]
    first = run(*args)
    assert first.exit_code == 0, first.output
    manifest = tmp_path / "out" / "demo" / "seas" / "manifest.csv"
    before = manifest.read_bytes()
    broken = next((data / "mvtec" / "disk" / "test").glob("*/000.png"))
    broken.write_bytes(broken.read_bytes()[:100])  # truncated image
    one_line_error(run(*args), str(broken))
    assert manifest.read_bytes() == before
    assert not list(manifest.parent.glob(".*tmp*"))  # no temporary leftovers


def test_python_dash_m_anoseg_runs_the_cli():
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    result = subprocess.run([sys.executable, "-m", "anoseg", "--help"], capture_output=True, text=True, env=env,
                            cwd=root, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: anoseg ") and "predict" in result.stdout
