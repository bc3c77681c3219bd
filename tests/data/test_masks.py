"""Mask binarisation for every encoding (docs/protocol.md §6 #10–#15) and image decoding (#16–#21)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from anoseg.data.images import inspect_image, is_image_file, read_image
from anoseg.data.masks import inspect_mask, read_mask
from anoseg.errors import AnosegError

from .conftest import truncate, write_image

BOX = np.zeros((8, 8), bool)
BOX[2:5, 3:7] = True


def _save(tmp_path, array, name="m.png", mode=None, **kw):
    image = Image.fromarray(array) if mode is None else Image.fromarray(array).convert(mode)
    path = tmp_path / name
    image.save(path, **kw)
    return path


@pytest.mark.parametrize("high", [255, 1, 7])
def test_l_masks_any_nonzero_value_is_defect(tmp_path, high):
    path = _save(tmp_path, BOX.astype(np.uint8) * high)
    assert np.array_equal(read_mask(path), BOX)


def test_soft_mask_threshold_override(tmp_path):
    values = np.array([[0, 60, 127, 128, 255]], np.uint8)
    path = _save(tmp_path, values)
    assert read_mask(path).tolist() == [[False, True, True, True, True]]
    assert read_mask(path, threshold=127).tolist() == [[False, False, False, True, True]]
    _, info = inspect_mask(path)
    assert info.n_values == 5 and info.histogram == {0: 1, 60: 1, 127: 1, 128: 1, 255: 1}


def test_mode_1_mask(tmp_path):
    path = tmp_path / "m.png"
    Image.fromarray(BOX).convert("1").save(path)
    assert Image.open(path).mode == "1"
    assert np.array_equal(read_mask(path), BOX)
    assert np.array_equal(read_mask(path, threshold=127), BOX)


def test_palette_label_mask_uses_indices(tmp_path):
    indices = BOX.astype(np.uint8) * 2
    indices[0, 0] = 1
    image = Image.fromarray(indices, mode="L").convert("P")
    image.putdata(indices.ravel().tolist())
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))  # black, red, green: labels
    path = tmp_path / "m.png"
    image.save(path)
    assert Image.open(path).mode == "P"
    expected = BOX.copy()
    expected[0, 0] = True
    assert np.array_equal(read_mask(path), expected)
    # an intensity threshold means nothing for label images: indices 1 and 2 stay defects
    assert np.array_equal(read_mask(path, threshold=127), expected)
    assert inspect_mask(path)[1].encoding == "palette-indices"


def test_palette_gray_mask_is_intensity(tmp_path):
    values = np.array([[0, 100, 200]], np.uint8)
    image = Image.fromarray(values).convert("P")
    image.putdata(values.ravel().tolist())
    image.putpalette([v for i in range(256) for v in (i, i, i)])
    path = tmp_path / "m.png"
    image.save(path)
    assert read_mask(path).tolist() == [[False, True, True]]
    assert read_mask(path, threshold=127).tolist() == [[False, False, True]]


def test_rgb_mask_takes_max_over_channels(tmp_path):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 2][BOX] = 200  # defect only in the blue channel: channel 0 (LFD) would miss it
    assert np.array_equal(read_mask(_save(tmp_path, rgb)), BOX)


def test_rgba_mask_colour_not_alpha(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0][BOX] = 255
    rgba[..., 3] = 255  # opaque everywhere: alpha says nothing
    path = _save(tmp_path, rgba)
    assert Image.open(path).mode == "RGBA"
    assert np.array_equal(read_mask(path), BOX)


def test_rgba_mask_alpha_when_colour_constant(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 3][BOX] = 255  # black everywhere, defect drawn in alpha
    mask, info = inspect_mask(_save(tmp_path, rgba))
    assert np.array_equal(mask, BOX) and info.encoding == "alpha"


def test_rgba_all_black_opaque_mask_is_empty(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 3] = 255
    assert not read_mask(_save(tmp_path, rgba)).any()


def test_la_masks(tmp_path):
    la = np.zeros((8, 8, 2), np.uint8)
    la[..., 0][BOX] = 255
    la[..., 1] = 255
    path = tmp_path / "la.png"
    Image.fromarray(la, mode="LA").save(path)
    assert Image.open(path).mode == "LA"
    assert np.array_equal(read_mask(path), BOX)
    la[..., 0] = 0
    la[..., 1] = BOX * 255
    Image.fromarray(la, mode="LA").save(path)
    assert np.array_equal(read_mask(path), BOX)


def test_16bit_mask_binarised_before_scaling(tmp_path):
    values = np.array([[0, 1, 30000, 40000, 65535]], np.uint16)
    path = tmp_path / "m.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode == "I;16"
    # value 1 of 65535 is a defect (÷257 would round it away)
    assert read_mask(path).tolist() == [[False, True, True, True, True]]
    # 127 on the 8-bit scale = 32639 on the 16-bit scale
    assert read_mask(path, threshold=127).tolist() == [[False, False, False, True, True]]


def test_float_mask(tmp_path):
    values = np.array([[0.0, 0.2, 0.6, 1.0]], np.float32)
    path = tmp_path / "m.tif"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode == "F"
    assert read_mask(path).tolist() == [[False, True, True, True]]
    assert read_mask(path, threshold=127).tolist() == [[False, False, True, True]]


def test_jpeg_mask_default_threshold_127(tmp_path):
    square = np.zeros((32, 32), np.uint8)
    square[5:19, 7:20] = 255  # not aligned to the 8×8 JPEG blocks: ringing around the edges
    path = _save(tmp_path, square, "m.jpg", quality=50)
    mask, info = inspect_mask(path)
    assert info.lossy and info.threshold == 127
    assert np.array_equal(mask, square > 0)
    assert read_mask(path, threshold=0).sum() > mask.sum()  # "!= 0" would turn compression noise into defect


def test_corrupt_and_truncated_masks_raise(tmp_path):
    path = _save(tmp_path, np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
    truncate(path)
    with pytest.raises(AnosegError, match=r"m\.png"):
        inspect_mask(path)
    (tmp_path / "x.png").write_bytes(b"not a png")
    with pytest.raises(AnosegError, match=r"x\.png"):
        read_mask(tmp_path / "x.png")
    with pytest.raises(AnosegError, match=r"missing\.png"):
        read_mask(tmp_path / "missing.png")


# ---------------------------------------------------------------------------------------------------------------
# images


def test_read_image_modes(tmp_path):
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    l_path = _save(tmp_path, gray, "l.png")
    out = read_image(l_path)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert all(np.array_equal(out[..., c], gray) for c in range(3))

    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = 100
    rgba[..., 3] = 0  # fully transparent: alpha is dropped, the colour stays
    assert (read_image(_save(tmp_path, rgba, "rgba.png")) == 100).all()

    sixteen = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 257) * 4
    path = tmp_path / "i16.png"
    Image.fromarray(sixteen).save(path)
    scaled = read_image(path)
    assert np.array_equal(scaled[..., 0], (np.arange(64).reshape(8, 8) * 4).astype(np.uint8))
    assert inspect_image(path).high_bit_depth

    floats = np.full((4, 4), 0.5, np.float32)
    path = tmp_path / "f.tif"
    Image.fromarray(floats).save(path)
    assert (read_image(path) == 128).all()

    p_path = tmp_path / "p.png"
    flat = Image.fromarray(np.full((8, 8, 3), (10, 20, 30), np.uint8))
    flat.convert("P", palette=Image.Palette.ADAPTIVE).save(p_path)
    assert Image.open(p_path).mode == "P"
    assert tuple(read_image(p_path)[0, 0]) == (10, 20, 30)


def test_inspect_image_detects_truncation_even_if_flag_set(tmp_path, monkeypatch):
    from PIL import ImageFile

    path = truncate(write_image(tmp_path / "t.png", (64, 64)))
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # as some libraries do globally
    with pytest.raises(AnosegError, match=r"t\.png"):
        inspect_image(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored


def test_inspect_image_mode_and_digest(tmp_path):
    a = write_image(tmp_path / "a.png", mode="L")
    copy = tmp_path / "b.png"
    Image.open(a).save(copy, compress_level=9)  # other bytes, same pixels
    info_a, info_b = inspect_image(a), inspect_image(copy)
    assert info_a.mode == "L" and info_a.size == (16, 16)
    assert info_a.digest == info_b.digest
    assert info_a.digest != inspect_image(write_image(tmp_path / "c.png")).digest


@pytest.mark.parametrize(("name", "expected"), [("000.png", True), ("0836.JPG", True), ("a.TiFf", True),
                                                 ("x.jpeg", True), ("y.bmp", True), (".000.png", False),
                                                 ("readme.txt", False), ("Thumbs.db", False)])
def test_is_image_file(name, expected):
    assert is_image_file(name) is expected
