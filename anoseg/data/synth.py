"""The built-in demo dataset: a tiny MVTec-AD-layout dataset plus SeaS-layout generated pairs, made in a few seconds.

``make_demo_data(root, seed)`` writes, deterministically for a seed (byte-identical files):

* ``root/mvtec/<category>/{train/good, test/good, test/<d>, ground_truth/<d>/NNN_mask.png}``, 160×160 images
  (12 ``train/good`` images per category, or more with ``train_good``),
  for three categories: ``weave`` (RGB fabric texture), ``disk`` (RGB shaded object on a background) and ``mesh``
  (grayscale wire mesh, mode ``L`` like MVTec's grid/screw/zipper);
* ``root/generated/seas/<category>/<d>/{image,mask}/NNN.png``, 192×192 (another size than the real images, as with
  SeaS's 512 px vs MVTec's 1024 px), L-mode 0/255 masks, drawn with the same defect painters on freshly rendered
  normal images; the last pair of each category's first defect type has an all-zero mask, as SeaS can produce.

Defects vary in shape (thin and thick scratches, cracks, holes, blobs, soft stains, missing wires), size and contrast
(some subtle), so that a small segmenter learns something real but does not score a trivial 1.0.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from anoseg.constants import DEMO_TRAIN_GOOD
from anoseg.io import make_folder, output_error

REAL_SIZE = 160
GENERATED_SIZE = 192
N_TRAIN_GOOD = DEMO_TRAIN_GOOD
N_TEST_GOOD = 8
N_GENERATED = 10

Sampler = Callable[[np.random.Generator], tuple[float, float]]


@dataclass(frozen=True)
class Product:
    """Where defects may go on a rendered normal image: a sampler of defect centres and the product's pixels."""

    sample: Sampler
    region: np.ndarray  # (S, S) bool: defects are clipped to it (no scratch runs off the disk onto the background)


Painter = Callable[[np.ndarray, np.random.Generator, float, Product], np.ndarray]


# ---------------------------------------------------------------------------------------------------------------
# normal images: float32 (S, S, 3) in 0…255 and where the product is


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    return x, y


def _everywhere(size: int) -> Product:
    def sample(rng: np.random.Generator) -> tuple[float, float]:
        return float(rng.uniform(0.12, 0.88) * size), float(rng.uniform(0.12, 0.88) * size)

    return Product(sample, np.ones((size, size), bool))


def _render_weave(rng: np.random.Generator, size: int) -> tuple[np.ndarray, Product]:
    """Plain-weave fabric: alternating over/under thread cells, shaded across each thread, soft illumination."""
    u = size / REAL_SIZE
    x, y = _grid(size)
    period = 10 * u * rng.uniform(0.95, 1.05)
    xs, ys = (x + rng.uniform(0, period)) / period, (y + rng.uniform(0, period)) / period
    over = (np.floor(xs) + np.floor(ys)) % 2 == 0
    shade = np.where(over, 0.55 + 0.45 * np.sin(np.pi * (ys % 1)), 0.55 + 0.45 * np.sin(np.pi * (xs % 1)))
    angle = rng.uniform(0, 2 * np.pi)
    light = 1 + 0.07 * np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / size + rng.uniform(0, 6.3))
    colour = np.array([150.0, 118.0, 84.0]) * rng.uniform(0.95, 1.05, 3)
    image = (shade * light)[..., None] * colour + rng.normal(0, 5, (size, size, 3))
    return image.astype(np.float32), _everywhere(size)


def _render_disk(rng: np.random.Generator, size: int) -> tuple[np.ndarray, Product]:
    """A lit metal disk with a groove ring, centred (± a little) on a dark gradient background."""
    u = size / REAL_SIZE
    x, y = _grid(size)
    cx, cy = size / 2 + rng.uniform(-2 * u, 2 * u, 2)
    radius = 0.34 * size * rng.uniform(0.97, 1.03)
    nx, ny = (x - cx) / radius, (y - cy) / radius
    r = np.hypot(nx, ny)
    nz = np.sqrt(np.clip(1 - r**2, 0, 1))
    shade = 0.45 + 0.55 * np.clip(-0.35 * nx - 0.45 * ny + 0.82 * nz, 0, 1)
    shade *= 1 - 0.3 * np.exp(-(((r - 0.6) / 0.035) ** 2))
    inside = np.clip((1 - r) * radius + 0.5, 0, 1)[..., None]  # anti-aliased rim
    background = (np.array([62.0, 70.0, 84.0]) * (0.85 + 0.3 * y / size)[..., None])
    metal = shade[..., None] * np.array([196.0, 184.0, 160.0])
    image = background * (1 - inside) + metal * inside + rng.normal(0, 3.5, (size, size, 3))

    def on_disk(g: np.random.Generator) -> tuple[float, float]:
        rho, phi = 0.8 * radius * np.sqrt(g.uniform(0, 1)), g.uniform(0, 2 * np.pi)
        return float(cx + rho * np.cos(phi)), float(cy + rho * np.sin(phi))

    return image.astype(np.float32), Product(on_disk, r < 0.97)


def _render_mesh(rng: np.random.Generator, size: int) -> tuple[np.ndarray, Product]:
    """A gently warped square wire mesh, bright wires on a dark ground (grayscale)."""
    u = size / REAL_SIZE
    x, y = _grid(size)
    period, half = 14 * u * rng.uniform(0.97, 1.03), 1.3 * u
    wx = x + 1.5 * u * np.sin(2 * np.pi * y / (0.7 * size) + rng.uniform(0, 6.3)) + rng.uniform(0, period)
    wy = y + 1.5 * u * np.sin(2 * np.pi * x / (0.8 * size) + rng.uniform(0, 6.3)) + rng.uniform(0, period)
    dist_v, dist_h = np.abs(wx % period - period / 2), np.abs(wy % period - period / 2)
    wire = np.clip(half - np.minimum(dist_v, dist_h) + 0.5, 0, 1)
    gray = 42 + 150 * wire * rng.uniform(0.92, 1.05) + rng.normal(0, 4, (size, size))
    return np.repeat(gray[..., None], 3, axis=2).astype(np.float32), _everywhere(size)


# ---------------------------------------------------------------------------------------------------------------
# defect painters: change the image in place and return the defect mask (bool)


def _canvas(size: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    canvas = Image.new("L", (size, size), 0)
    return canvas, ImageDraw.Draw(canvas)


def _blend(image: np.ndarray, weight: np.ndarray, target: np.ndarray) -> None:
    image += weight[..., None] * (target - image)


def _polygon(rng: np.random.Generator, centre: tuple[float, float], radius: float) -> list[tuple[float, float]]:
    k = int(rng.integers(7, 13))
    angles = np.sort(rng.uniform(0, 2 * np.pi, k))
    radii = radius * rng.uniform(0.55, 1.0, k)
    return [(centre[0] + r * np.cos(a), centre[1] + r * np.sin(a)) for a, r in zip(angles, radii, strict=True)]


def paint_scratch(image: np.ndarray, rng: np.random.Generator, u: float, product: Product) -> np.ndarray:
    """One or two straight lines, 1–3 px (often 1 px: thin defects vanish under bilinear downsizing)."""
    canvas, draw = _canvas(image.shape[0])
    for _ in range(int(rng.integers(1, 3))):
        (cx, cy), angle = product.sample(rng), rng.uniform(0, np.pi)
        half = rng.uniform(0.08, 0.25) * image.shape[0]
        dx, dy = half * np.cos(angle), half * np.sin(angle)
        width = max(1, round(float(rng.choice([1, 1, 2, 3])) * u))
        draw.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=255, width=width)
    mask = (np.asarray(canvas) > 0) & product.region
    delta = rng.choice([-1, 1]) * rng.uniform(35, 100)
    _blend(image, mask * rng.uniform(0.7, 1.0), np.clip(image + delta, 0, 255))
    return mask


def paint_crack(image: np.ndarray, rng: np.random.Generator, u: float, product: Product) -> np.ndarray:
    """A dark random-walk polyline (a crack), 1–2 px wide."""
    canvas, draw = _canvas(image.shape[0])
    point, angle = product.sample(rng), rng.uniform(0, 2 * np.pi)
    points = [point]
    for _ in range(int(rng.integers(5, 11))):
        angle += rng.normal(0, 0.6)
        step = rng.uniform(4, 10) * u
        point = (point[0] + step * np.cos(angle), point[1] + step * np.sin(angle))
        points.append(point)
    draw.line(points, fill=255, width=max(1, round(float(rng.choice([1, 2])) * u)), joint="curve")
    mask = (np.asarray(canvas) > 0) & product.region
    _blend(image, mask.astype(np.float32), image * rng.uniform(0.25, 0.55))
    return mask


def paint_hole(image: np.ndarray, rng: np.random.Generator, u: float, product: Product) -> np.ndarray:
    """An irregular dark hole of random size."""
    canvas, draw = _canvas(image.shape[0])
    draw.polygon(_polygon(rng, product.sample(rng), rng.uniform(3, 13) * u), fill=255)
    mask = (np.asarray(canvas) > 0) & product.region
    dark = rng.uniform(15, 45) + rng.normal(0, 4, image.shape)
    _blend(image, mask.astype(np.float32), dark)
    return mask


def paint_blob(image: np.ndarray, rng: np.random.Generator, u: float, product: Product) -> np.ndarray:
    """A contamination: an irregular blob of a foreign colour, partly opaque."""
    canvas, draw = _canvas(image.shape[0])
    draw.polygon(_polygon(rng, product.sample(rng), rng.uniform(3, 11) * u), fill=255)
    mask = (np.asarray(canvas) > 0) & product.region
    colour = rng.uniform(0, 255, 3) if rng.uniform() < 0.5 else np.full(3, rng.choice([20.0, 235.0]))
    _blend(image, mask * rng.uniform(0.55, 0.95), colour + rng.normal(0, 6, image.shape))
    return mask


def paint_stain(image: np.ndarray, rng: np.random.Generator, u: float, product: Product) -> np.ndarray:
    """A soft-edged ellipse of shifted colour/brightness; often subtle (contrast down to ~12 grey levels)."""
    size = image.shape[0]
    canvas, draw = _canvas(size)
    (cx, cy), (ax, ay) = product.sample(rng), rng.uniform(4, 16, 2) * u
    draw.ellipse([cx - ax, cy - ay, cx + ax, cy + ay], fill=255)
    canvas = canvas.rotate(float(rng.uniform(0, 180)), resample=Image.Resampling.BILINEAR, center=(cx, cy))
    soft = np.asarray(canvas.filter(ImageFilter.GaussianBlur(2 * u)), dtype=np.float32) / 255 * product.region
    direction = rng.normal(0, 1, 3)
    direction /= np.abs(direction).max()  # strongest channel shifts by exactly ``contrast`` grey levels
    contrast = rng.uniform(12, 50)
    image += soft[..., None] * contrast * direction
    return soft > 0.5


def paint_missing_wire(image: np.ndarray, rng: np.random.Generator, u: float, product: Product) -> np.ndarray:
    """Wires erased inside a narrow band (broken mesh); the mask is exactly the wire pixels that were erased."""
    size = image.shape[0]
    wire = image.max(axis=2) > 70  # wire (and its bright anti-aliased edge) vs the dark ground at ~42
    for _ in range(20):  # retry until the band actually crosses a wire
        (cx, cy), length, width = product.sample(rng), rng.uniform(0.1, 0.25) * size, rng.uniform(4, 8) * u
        box = (cx - width / 2, cy - length / 2, cx + width / 2, cy + length / 2)
        if rng.uniform() < 0.5:
            box = (cx - length / 2, cy - width / 2, cx + length / 2, cy + width / 2)
        canvas, draw = _canvas(size)
        draw.rectangle(box, fill=255)
        mask = (np.asarray(canvas) > 0) & product.region & wire
        if mask.any():
            image[mask] = 42 + rng.normal(0, 4, (int(mask.sum()), 1))
            return mask
    return np.zeros(image.shape[:2], bool)


# ---------------------------------------------------------------------------------------------------------------
# the three categories


@dataclass(frozen=True)
class DemoCategory:
    name: str
    mode: str  # "RGB" or "L" (saved mode)
    render: Callable[[np.random.Generator, int], tuple[np.ndarray, Product]]
    defects: dict[str, tuple[Painter, int]]  # defect type → (painter, number of real test images)


DEMO_CATEGORIES = (
    DemoCategory("weave", "RGB", _render_weave, {"hole": (paint_hole, 7), "scratch": (paint_scratch, 8),
                                                  "stain": (paint_stain, 6)}),
    DemoCategory("disk", "RGB", _render_disk, {"crack": (paint_crack, 9), "scratch": (paint_scratch, 7),
                                                "stain": (paint_stain, 6)}),
    DemoCategory("mesh", "L", _render_mesh, {"broken": (paint_missing_wire, 6), "contamination": (paint_blob, 8)}),
)


def _save(array: np.ndarray, path: Path, mode: str) -> None:
    make_folder(path.parent)
    pixels = np.clip(np.round(array), 0, 255).astype(np.uint8)
    if mode == "L":
        pixels = pixels[..., 0] if pixels.ndim == 3 else pixels
    try:
        Image.fromarray(pixels).save(path, format="PNG")  # (H, W) uint8 → L, (H, W, 3) → RGB
    except OSError as exc:
        raise output_error(exc, path) from None


def _save_mask(mask: np.ndarray, path: Path) -> None:
    _save(mask.astype(np.uint8) * 255, path, "L")


def _defect_image(spec: DemoCategory, painter: Painter, rng: np.random.Generator, size: int,
                  ) -> tuple[np.ndarray, np.ndarray]:
    image, product = spec.render(rng, size)
    mask = painter(image, rng, size / REAL_SIZE, product)
    if spec.mode == "L":  # keep grayscale products grayscale whatever the painter did
        image[:] = image.mean(axis=2, keepdims=True)
    return image, mask


def _stream(seed: int, *key: str) -> np.random.Generator:
    """A random stream fixed by the seed and ``key``: one per category (adding a category never changes the others),
    another for a category's extra ``train/good`` images (asking for them never changes the default files)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(zlib.crc32(k.encode()) for k in key)))


def _write_category(spec: DemoCategory, seed: int, data_root: Path, generated_root: Path,
                    train_good: int = N_TRAIN_GOOD) -> None:
    rng = _stream(seed, spec.name)
    base = data_root / spec.name
    for folder, count in (("train", N_TRAIN_GOOD), ("test", N_TEST_GOOD)):
        for i in range(count):
            _save(spec.render(rng, REAL_SIZE)[0], base / folder / "good" / f"{i:03d}.png", spec.mode)
    for defect, (painter, count) in spec.defects.items():
        for i in range(count):
            image, mask = _defect_image(spec, painter, rng, REAL_SIZE)
            _save(image, base / "test" / defect / f"{i:03d}.png", spec.mode)
            _save_mask(mask, base / "ground_truth" / defect / f"{i:03d}_mask.png")
    for k, (defect, (painter, _)) in enumerate(spec.defects.items()):
        out = generated_root / spec.name / defect
        for i in range(N_GENERATED):
            if k == 0 and i == N_GENERATED - 1:  # a generator sometimes returns no defect at all
                image, mask = spec.render(rng, GENERATED_SIZE)[0], np.zeros((GENERATED_SIZE,) * 2, bool)
            else:
                image, mask = _defect_image(spec, painter, rng, GENERATED_SIZE)
            _save(image, out / "image" / f"{i:03d}.png", "RGB")  # SeaS writes RGB images whatever the source
            _save_mask(mask, out / "mask" / f"{i:03d}.png")
    extra = _stream(seed, spec.name, "train/good")  # after everything else, from its own stream
    for i in range(N_TRAIN_GOOD, train_good):
        _save(spec.render(extra, REAL_SIZE)[0], base / "train" / "good" / f"{i:03d}.png", spec.mode)


def make_demo_data(root: str | Path, seed: int = 0, train_good: int = N_TRAIN_GOOD) -> dict[str, Path]:
    """Write the demo dataset under ``root`` (see the module docstring); the same seed gives byte-identical files.

    ``train_good`` (≥ ``N_TRAIN_GOOD``) is the number of ``train/good`` images per category: the ones beyond the
    default 12 come from a stream of their own, so every other file is byte-identical to the default dataset's
    (more good images for a validation split, recipe ``demo_val``). ``ValueError`` below ``N_TRAIN_GOOD``.

    Example:
        >>> paths = make_demo_data("data/demo")
        >>> paths["data_root"], paths["generated_root"]
        (PosixPath('data/demo/mvtec'), PosixPath('data/demo/generated/seas'))
    """
    if train_good < N_TRAIN_GOOD:
        raise ValueError(f"train_good must be at least {N_TRAIN_GOOD}, not {train_good}")
    root = Path(root)
    data_root, generated_root = root / "mvtec", root / "generated" / "seas"
    for spec in DEMO_CATEGORIES:
        _write_category(spec, seed, data_root, generated_root, train_good)
    return {"data_root": data_root, "generated_root": generated_root}
