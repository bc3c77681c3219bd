"""Tiny copies of the public datasets' trees and of a user's folder tree (names, extensions, mask naming and quirks
as distributed; 16-48 px images, nothing downloaded). Each builder returns the data root."""

from __future__ import annotations

from pathlib import Path

from .conftest import write_image, write_mask


def mvtec_ad_2(root: Path) -> Path:
    """``<cat>/{train,validation}/good``, ``test_public/{good,bad,ground_truth/bad/<stem>_mask.png}``, private test
    sets without ground truth; file names ``NNN_<lighting>.png``; images wider than tall."""
    size = (48, 32)
    lighting = ["regular", "overexposed", "underexposed", "shift_1", "shift_2", "regular"]
    for category in ("can", "vial"):
        base = root / category
        for i in range(4):
            write_image(base / "train/good" / f"{i:03d}_regular.png", size)
        write_image(base / "validation/good/000_regular.png", size)
        for i in range(2):
            write_image(base / "test_public/good" / f"{i:03d}_regular.png", size)
        for i, light in enumerate(lighting):
            write_image(base / "test_public/bad" / f"{i:03d}_{light}.png", size)
            write_mask(base / "test_public/ground_truth/bad" / f"{i:03d}_{light}_mask.png", size)
        write_image(base / "test_private/000_regular.png", size)
        write_image(base / "test_private_mixed/000_regular.png", size)
    return root


def mpdd(root: Path) -> Path:
    """MVTec AD's tree: ``<cat>/{train/good, test/<d>, ground_truth/<d>/NNN_mask.png}``."""
    for category, defects in (("bracket_black", ("hole", "scratches")), ("tubes", ("anomalous",))):
        base = root / category
        for i in range(4):
            write_image(base / "train/good" / f"{i:03d}.png")
        for i in range(2):
            write_image(base / "test/good" / f"{i:03d}.png")
        for defect in defects:
            for i in range(3):
                write_image(base / "test" / defect / f"{i:03d}.png")
                write_mask(base / "ground_truth" / defect / f"{i:03d}_mask.png")
    return root


def btad(root: Path) -> Path:
    """``<01|02|03>/{train/ok, test/{ok,ko}, ground_truth/ko}``, 4-digit names; 01: .bmp images with .png masks,
    02: .png/.png, 03: .bmp/.bmp."""
    for category, (image_ext, mask_ext) in {"01": (".bmp", ".png"), "02": (".png", ".png"),
                                            "03": (".bmp", ".bmp")}.items():
        base = root / category
        for i in range(4):
            write_image(base / "train/ok" / f"{i:04d}{image_ext}")
        for i in range(2):
            write_image(base / "test/ok" / f"{i:04d}{image_ext}")
        for i in range(3):
            write_image(base / "test/ko" / f"{i:04d}{image_ext}")
            write_mask(base / "ground_truth/ko" / f"{i:04d}{mask_ext}")
    return root


def ksdd2(root: Path) -> Path:
    """``{train,test}/NNNNN.png`` + ``NNNNN_GT.png`` for every image (all zero for negatives), numbered on across
    both folders; every second image is a positive (train: 4 of 8, test: 2 of 5); portrait images."""
    size = (16, 40)
    number = 10000
    for split, n in (("train", 8), ("test", 5)):
        for i in range(n):
            write_image(root / split / f"{number}.png", size)
            write_mask(root / split / f"{number}_GT.png", size, value=255 if i % 2 else 0)
            number += 1
    return root


def folder(root: Path) -> Path:
    """A user's tree: two categories; masks beside (``_mask``), in a parallel ``masks/`` tree (.jpg images, .png
    masks, same stem), in anomalib's ``mask/`` tree, and one defect type without masks."""
    pcb = root / "pcb"
    for i in range(10):
        write_image(pcb / "good" / f"img_{i:02d}.png")
    for i in range(3):
        write_image(pcb / "scratch" / f"s{i}.png")
        write_mask(pcb / "scratch" / f"s{i}_mask.png")
    for name in ("a7", "b2", "c9", "d1"):
        write_image(pcb / "dent" / f"{name}.jpg")
        write_mask(pcb / "masks" / "dent" / f"{name}.png")
    for i in range(2):
        write_image(pcb / "stain" / f"{i}.png")
    connector = root / "connector"
    for i in range(5):
        write_image(connector / "OK" / f"{i}.png")
    for i in range(3):
        write_image(connector / "bent" / f"{i}.png")
        write_mask(connector / "mask" / "bent" / f"{i}.png")
    return root


def folder_single(root: Path) -> Path:
    """One category without a category level (``good/`` and defect folders directly under the root) and a fixed
    test list ``test.csv``."""
    for i in range(4):
        write_image(root / "normal" / f"{i}.png")
    for i in range(4):
        write_image(root / "crack" / f"{i}.png")
        write_mask(root / "crack" / f"{i}_mask.png")
    (root / "test.csv").write_text("image\nnormal/3.png\ncrack/0.png\ncrack/1.png\n")
    return root


def autovi(root: Path) -> Path:
    """MVTec's tree with one mask folder per anomalous image: ``ground_truth/<d>/<stem>/0000.png``; grayscale
    images in one category (as some AutoVI classes)."""
    for category, mode in (("pipe_clip", "RGB"), ("tank_screw", "L")):
        base = root / category
        for i in range(4):
            write_image(base / "train/good" / f"{i:04d}.png", mode=mode)
        for i in range(2):
            write_image(base / "test/good" / f"{i:04d}.png", mode=mode)
        for defect in ("unclipped", "operator_hand") if category == "pipe_clip" else ("missing",):
            for i in range(3):
                write_image(base / "test" / defect / f"{i:04d}.png", mode=mode)
                write_mask(base / "ground_truth" / defect / f"{i:04d}" / "0000.png")
    return root


def kolektorsdd(root: Path) -> Path:
    """``kosNN/PartN.jpg`` + ``PartN_label.bmp`` beside each; Part2 of every kos folder is defective."""
    size = (16, 40)
    for kos in range(1, 4):
        for part in range(5):
            folder = root / f"kos{kos:02d}"
            write_image(folder / f"Part{part}.jpg", size)
            write_mask(folder / f"Part{part}_label.bmp", size, value=255 if part == 2 else 0)
    return root


def bmad(root: Path) -> Path:
    """``<cat>/{train/good, valid/..., test/{good,Ungood}/{img,label}}``, grayscale scans, same-name masks (empty
    ones for test/good)."""
    for category in ("Brain", "Liver"):
        base = root / category
        for i in range(4):
            write_image(base / "train/good" / f"{i:05d}.png", mode="L")
        for split in ("valid", "test"):
            for i in range(2):
                write_image(base / split / "good/img" / f"{i:05d}.png", mode="L")
                write_mask(base / split / "good/label" / f"{i:05d}.png", value=0)
            for i in range(3 if split == "test" else 1):
                write_image(base / split / "Ungood/img" / f"{100 + i:05d}.png", mode="L")
                write_mask(base / split / "Ungood/label" / f"{100 + i:05d}.png")
    return root


TREES = {"mvtec_ad_2": mvtec_ad_2, "mpdd": mpdd, "btad": btad, "ksdd2": ksdd2, "autovi": autovi,
         "kolektorsdd": kolektorsdd, "bmad": bmad, "folder": folder}


def bmad_readme(root: Path) -> Path:
    """BMAD as its README draws it: ``bmad``'s tree with the training images in ``train/good/img`` and the masks of
    ``Ungood`` in ``anomaly_mask/`` instead of ``label/`` (the same files, moved)."""
    bmad(root)
    for base in root.iterdir():
        good = base / "train" / "good"
        (good / "img").mkdir()
        for image in sorted(good.glob("*.png")):
            image.rename(good / "img" / image.name)
        for split in ("valid", "test"):
            (base / split / "Ungood" / "label").rename(base / split / "Ungood" / "anomaly_mask")
    return root
