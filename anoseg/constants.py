"""anoseg's vocabulary: every name or number that more than one module spells, defined once.

It imports nothing (not even of anoseg), so any module, the CLI's option choices included, can read it without
making ``anoseg --help`` slower. The formats these names belong to are described in docs/schemas.md and
docs/protocol.md.
"""

from __future__ import annotations

# ---- generators and categories ------------------------------------------------------------------------------------
#: The generator name of real data only (no generated pairs); its outputs live in ``<output>/<dataset>/none/``.
NO_GENERATOR = "none"
#: ``--category all``: one unified model over every category. Road and scene data have this one category too.
ALL_CATEGORIES = "all"
PERLIN, CUTPASTE = "perlin", "cutpaste"
#: ``anoseg generate --method``: anoseg's own defect makers (``data/generators``'s ``METHODS`` says what each writes).
GENERATION_METHODS = (PERLIN, CUTPASTE)

#: ``anoseg synth``: the demo dataset's ``train/good`` images per category (``--train-good`` asks for more).
DEMO_TRAIN_GOOD = 12

# ---- tasks and protocols ------------------------------------------------------------------------------------------
ANOMALY, ROAD, SCENE = "anomaly", "road", "scene"
#: A recipe's ``task``: anomaly segmentation (the papers), road detection (KITTI) or multi-class scene parsing.
TASKS = (ANOMALY, ROAD, SCENE)
CLEAN, LFD_COMPAT = "clean", "lfd-compat"
#: Mask protocols (docs/protocol.md): ``clean`` = any non-zero mask pixel is a defect; ``lfd-compat`` = only 255.
PROTOCOLS = (CLEAN, LFD_COMPAT)

# ---- splits (docs/protocol.md §2.1) ---------------------------------------------------------------------------------
#: The manifest's ``split`` values: ``val`` rows are held out of the training side (recipe ``split.val``), never
#: trained on and never tested on.
SPLIT_TRAIN, SPLIT_TEST, SPLIT_VAL = "train", "test", "val"
#: The protocol's share of each defect type's real images that may train (⌊n/3⌋); the default ``split.real_fraction``.
PROTOCOL_REAL_FRACTION = 1 / 3

# ---- metrics ------------------------------------------------------------------------------------------------------
#: The seven metrics ``anoseg eval`` reports per anomaly category, in the order of the metrics.json schema.
METRICS: tuple[str, ...] = (
    "image_auroc",
    "image_ap",
    "image_f1max",
    "pixel_auroc",
    "pixel_ap",
    "pixel_f1max",
    "iou",
)
#: The metrics ``anoseg eval`` computes per defect type (that type's test images against the good ones; metrics.json
#: ``by_defect``) and ``report --by defect`` tabulates.
DEFECT_METRICS: tuple[str, ...] = ("image_auroc", "image_ap", "pixel_ap", "iou")
#: The optional eighth metric (``eval --aupro``), off the papers' default columns.
PIXEL_AUPRO = "pixel_aupro"
#: Levels of an operating point (``eval --target-fpr image:0.01``): a threshold on the image score (max of the map) or
#: on each pixel's score; and the criteria that choose one (docs/operating-points.md).
IMAGE_LEVEL, PIXEL_LEVEL = "image", "pixel"
LEVELS = (IMAGE_LEVEL, PIXEL_LEVEL)
F1MAX, FPR, RECALL = "f1max", "fpr", "recall"
#: Where an operating point's threshold was chosen: the validation split, or the test split it is judged on (oracle).
CHOSEN_ON_VAL, CHOSEN_ON_TEST = "validation", "test (oracle)"
MODEL_RESOLUTION, NATIVE_RESOLUTION = "model", "native"
#: ``eval --resolution``: score maps at the network's input size (the papers) or at each mask's own size.
RESOLUTIONS = (MODEL_RESOLUTION, NATIVE_RESOLUTION)

# ---- images -------------------------------------------------------------------------------------------------------
#: File extensions read as images or masks, compared case-insensitively (VisA ships ``.JPG``).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: Every segmenter's input height and width must be a multiple of this (their deepest output stride).
SIZE_MULTIPLE = 32

# ---- output files and their schema identifiers (docs/schemas.md) --------------------------------------------------
MANIFEST_FILE = "manifest.csv"
DATA_REPORT_FILE = "data_report.json"
METRICS_FILE = "metrics.json"
METRICS_CSV_FILE = "metrics.csv"
THRESHOLDS_FILE = "thresholds.json"
SELECTION_FILE = "selection.json"  # <run>/selection.json: the checkpoint `train --select` chose
BENCH_FILE = "bench.json"

METRICS_SCHEMA = "anoseg.metrics/1"
DATA_REPORT_SCHEMA = "anoseg.data_report/1"
CHECKPOINT_FORMAT = "anoseg.checkpoint/1"
THRESHOLDS_SCHEMA = "anoseg.thresholds/1"
EXPORT_SCHEMA = "anoseg.export/1"  # the JSON sidecar beside an exported model
BENCH_SCHEMA = "anoseg.bench/1"
REPORT_SCHEMA = "anoseg.report/1"
SWEEP_SCHEMA = "anoseg.sweep/1"

# ---- command-line choices that several modules check --------------------------------------------------------------
#: ``report --format``.
REPORT_FORMATS = ("markdown", "csv", "json")
#: ``report --by``: extra breakdowns of the results (``defect``: per defect type, metrics.json ``by_defect``).
REPORT_BY = ("defect",)
#: ``export --format`` → the model file's suffix.
EXPORT_FORMATS = {"onnx": ".onnx", "torchscript": ".ts"}
#: ``export --exporter``: ``auto`` tries torch's dynamo exporter, then the legacy one.
EXPORTERS = ("auto", "dynamo", "legacy")
#: ``sweep --executor`` (submitit).
EXECUTORS = ("local", "debug", "slurm")
#: ``train --precision auto``: bf16 autocast where the hardware runs bf16 natively, fp32 elsewhere (docs/training.md).
PRECISION_AUTO = "auto"
#: A new run's precision when ``--precision`` is not given: fp32, the same arithmetic on every CPU and GPU, so the
#: same command gives the same numbers up to float noise on any machine (``auto`` is opt-in speed; docs/training.md,
#: "Precision and the machine").
DEFAULT_PRECISION = "32-true"
#: ``auto`` and Lightning's precision names (lightning.fabric's ``_PRECISION_INPUT_STR``), spelled out to keep
#: imports light.
PRECISIONS = (PRECISION_AUTO, "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true")
#: ``--device`` names (a full match): CUDA's presence is checked where a device is used (``resolve_device``).
DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?"
