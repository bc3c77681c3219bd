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

# ---- tasks and protocols ------------------------------------------------------------------------------------------
ANOMALY, ROAD, SCENE = "anomaly", "road", "scene"
#: A recipe's ``task``: anomaly segmentation (the papers), road detection (KITTI) or multi-class scene parsing.
TASKS = (ANOMALY, ROAD, SCENE)
CLEAN, LFD_COMPAT = "clean", "lfd-compat"
#: Mask protocols (docs/protocol.md): ``clean`` = any non-zero mask pixel is a defect; ``lfd-compat`` = only 255.
PROTOCOLS = (CLEAN, LFD_COMPAT)

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
#: The optional eighth metric (``eval --aupro``), off the papers' default columns.
PIXEL_AUPRO = "pixel_aupro"
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
#: ``export --format`` → the model file's suffix.
EXPORT_FORMATS = {"onnx": ".onnx", "torchscript": ".ts"}
#: ``export --exporter``: ``auto`` tries torch's dynamo exporter, then the legacy one.
EXPORTERS = ("auto", "dynamo", "legacy")
#: ``sweep --executor`` (submitit).
EXECUTORS = ("local", "debug", "slurm")
#: ``train --precision auto``: bf16 autocast where the hardware runs bf16 natively, fp32 elsewhere (docs/training.md).
PRECISION_AUTO = "auto"
#: ``auto`` and Lightning's precision names (lightning.fabric's ``_PRECISION_INPUT_STR``), spelled out to keep
#: imports light.
PRECISIONS = (PRECISION_AUTO, "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true")
#: ``--device`` names (a full match): CUDA's presence is checked where a device is used (``resolve_device``).
DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?"
