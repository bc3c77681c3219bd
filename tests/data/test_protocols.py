"""Every function of ``anoseg.data.protocols``, under both protocols (docs/protocol.md §4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anoseg.constants import PROTOCOLS
from anoseg.data.protocols import image_label, iou_mask, pixel_labels, resized_mask, train_target


def save(path: Path, array: np.ndarray) -> str:
    Image.fromarray(array).save(path)
    return str(path)


@pytest.fixture
def thin_bar(tmp_path: Path) -> str:
    """A 1-px scratch across a 256² mask (rows 101), 0/255: shrunk ×4 it is thinner than one target pixel."""
    mask = np.zeros((256, 256), np.uint8)
    mask[101, :] = 255
    return save(tmp_path / "bar.png", mask)


def test_the_two_protocols() -> None:
    assert PROTOCOLS == ("clean", "lfd-compat")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_normal_image_without_a_mask_file_gets_zeros_of_the_requested_size(protocol: str) -> None:
    stored = resized_mask(None, (12, 20), protocol)
    assert stored.shape == (12, 20) and stored.dtype == np.uint8 and not stored.any()
    assert not resized_mask("", (4, 4), protocol).any()


def test_clean_keeps_a_thin_scratch_as_one_binary_row(thin_bar: str) -> None:
    stored = resized_mask(thin_bar, (64, 64), "clean")
    assert set(np.unique(stored)) == {0, 1}
    assert np.flatnonzero(stored.any(axis=1)).tolist() == [25] and stored[25].all()  # row 101 // 4, whole width
    assert train_target(stored, "clean").sum() == 64 and iou_mask(stored, "clean").sum() == 64
    assert pixel_labels(stored, "clean").sum() == 64 and image_label(stored[None], "clean").tolist() == [True]


def test_lfd_compat_blurs_a_thin_scratch_out_of_the_target_and_iou_but_not_out_of_the_pixel_labels(
        thin_bar: str) -> None:
    stored = resized_mask(thin_bar, (64, 64), "lfd-compat")
    assert stored.dtype == np.uint8 and 0 < stored.max() < 255  # bilinear averages the 1-px line away
    assert not train_target(stored, "lfd-compat").any()  # LFD's truncation: only 255 counts
    assert not iou_mask(stored, "lfd-compat").any()
    labels = pixel_labels(stored, "lfd-compat")  # LFD's != 0: dilated
    assert labels.any(axis=1).sum() >= 2 and labels.all(axis=1)[labels.any(axis=1)].all()
    assert image_label(stored[None], "lfd-compat").tolist() == [True]


def test_lfd_compat_keeps_raw_values_and_channel_zero(tmp_path: Path) -> None:
    visa = save(tmp_path / "visa.png", np.full((8, 8), 1, np.uint8))  # raw VisA: defect pixels hold 1
    stored = resized_mask(visa, (8, 8), "lfd-compat")
    assert stored.tolist() == np.full((8, 8), 1).tolist()  # same size: values untouched, not binarised
    assert not train_target(stored, "lfd-compat").any() and pixel_labels(stored, "lfd-compat").all()
    assert resized_mask(visa, (4, 4), "clean").tolist() == np.ones((4, 4)).tolist()  # clean: value > 0 is defect

    green = np.zeros((8, 8, 3), np.uint8)
    green[..., 1] = 255  # defect drawn in the green channel only
    path = save(tmp_path / "green.png", green)
    assert not resized_mask(path, (4, 4), "lfd-compat").any()  # LFD reads channel 0 only
    assert resized_mask(path, (4, 4), "clean").all()  # clean: the maximum over colour channels

    deep = save(tmp_path / "deep.png", np.full((4, 4), 1000, np.uint16))
    assert Image.open(deep).mode == "I;16"
    assert resized_mask(deep, (4, 4), "lfd-compat").tolist() == np.full((4, 4), 255).tolist()  # clipped to 8 bit


def test_label_rules_on_the_same_stored_mask() -> None:
    stored = np.array([[0, 1, 128], [254, 255, 0]], np.uint8)
    assert train_target(stored, "lfd-compat").tolist() == [[0, 0, 0], [0, 1, 0]]
    assert train_target(stored, "clean").tolist() == [[0, 1, 1], [1, 1, 0]]
    assert train_target(stored, "clean").dtype == np.uint8
    for protocol in PROTOCOLS:
        assert pixel_labels(stored, protocol).tolist() == [[False, True, True], [True, True, False]]
    assert iou_mask(stored, "lfd-compat").tolist() == [[False, False, False], [False, True, False]]
    assert iou_mask(stored, "clean").tolist() == [[False, True, True], [True, True, False]]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_image_label_is_any_non_zero_pixel_per_image(protocol: str) -> None:
    masks = np.zeros((4, 3, 3), np.uint8)
    masks[1, 2, 2] = 1
    masks[3, 0, 0] = 255
    assert image_label(masks, protocol).tolist() == [False, True, False, True]
