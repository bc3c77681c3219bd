"""`prepare --dry-run` on a road/scene recipe prints the counts and writes nothing."""

from __future__ import annotations

from click.testing import CliRunner

from anoseg.cli import main

from .synthetic import make_camvid_segnet


def test_dry_run_of_a_scene_recipe_writes_nothing(tmp_path):
    root = make_camvid_segnet(tmp_path / "camvid")
    output = tmp_path / "outputs"
    result = CliRunner().invoke(main, ["prepare", "--recipe", "camvid", "--data-root", str(root), "--dry-run",
                                       "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert "nothing written" in result.output and not output.exists()
