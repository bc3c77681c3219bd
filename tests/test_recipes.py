"""Recipes load, override and fail with clear messages."""

from __future__ import annotations

import pytest

from anoseg.errors import AnosegError
from anoseg.recipes import list_recipes, load_recipe


def test_every_shipped_recipe_loads():
    names = list_recipes()
    assert {"demo", "mvtec_ad", "visa", "mvtec_3d_ad"} <= set(names)
    for name in names:
        recipe = load_recipe(name)
        assert recipe.name == name
        assert recipe.num_classes == len(recipe.class_names)


def test_paper_defaults_in_the_mvtec_recipe():
    recipe = load_recipe("mvtec_ad")
    assert len(recipe.categories) == 15 and recipe.image_size == (256, 256)
    assert (recipe.train.batch_size, recipe.train.lr, recipe.train.eval_epoch) == (8, 0.01, 100)
    assert recipe.train.class_weights == (1.0, 4.0) and recipe.train.augment == ()


def test_override_replaces_only_given_values():
    recipe = load_recipe("demo").override(train__epochs=3, generator=None, image_size=(64, 96))
    assert recipe.train.epochs == 3 and recipe.generator == "seas" and recipe.image_size == (64, 96)
    assert recipe.train.lr == load_recipe("demo").train.lr


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(AnosegError, match="mvtec_ad"):
        load_recipe("nope")


@pytest.mark.parametrize(("text", "message"), [
    ("name: x\nbogus: 1\n", "unknown setting"),
    ("name: x\ntrain: {epochz: 3}\n", "train.epochz"),
    ("name: [unclosed\n", "not valid YAML"),
    ("name: x\ntask: painting\n", "task must be"),
])
def test_bad_recipe_files_are_named(tmp_path, text, message):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(AnosegError, match=message):
        load_recipe(path)
