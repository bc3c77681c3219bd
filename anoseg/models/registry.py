"""The model registry: one record per segmenter, and nothing heavy (no torch), so ``anoseg models`` is instant.

A :class:`ModelSpec` holds every fact about a segmenter that code outside its architecture module needs: its display
name and report position (the tuple order below), its family, the auxiliary terms of its training loss, where
``--backbone-weights imagenet`` comes from and how a weight file's keys map onto it, and the reference cost measured
from the authors' code. ``anoseg.models.build.build_model`` turns a record into a network (the architecture module
is imported only then); the report, the loss, ``anoseg models`` and the tests read the records.

Backbones have their own records (:class:`BackboneSpec`, like segmentation_models.pytorch's encoder table): a model
record names its backbone, and the backbone record says which ImageNet file fits it.

Example:
    >>> model_spec("sanet_s").display_name, model_spec("sanet_s").loss.aux_weight
    ('SANet-S', 0.4)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from anoseg.errors import AnosegError

__all__ = ["BACKBONES", "MODELS", "BackboneSpec", "LossSpec", "ModelSpec", "Reference", "WeightSpec",
           "backbone_spec", "list_models", "model_spec"]


@dataclass(frozen=True)
class LossSpec:
    """The auxiliary terms a model's paper adds to OHEM cross-entropy on the main output (``anoseg.losses``).

    ``aux``: criterion on each ``"aux"`` output — ``"ce"`` (class-weighted cross-entropy), ``"ohem"`` (the main
    output's OHEM) or None (the model has no aux outputs). ``boundary_weight``: weight of the class-balanced BCE on the
    ``"boundary"`` output (0: none); ``boundary_confidence``: the boundary-aware OHEM term keeps labels where
    ``sigmoid(boundary)`` exceeds it (None: no such term).
    """

    aux: str | None = None
    aux_weight: float = 0.0
    boundary_weight: float = 0.0
    boundary_confidence: float | None = None


MAIN_ONLY = LossSpec()
# SANet (CuZaoo/SANet-main FullModel): BALANCE_WEIGHTS 0.4 on the aux head, boundary BCE ×20,
# boundary-aware OHEM at confidence 0.8.
SANET_LOSS = LossSpec(aux="ce", aux_weight=0.4, boundary_weight=20.0, boundary_confidence=0.8)
# BiSeNetV2 (CoinCheung/BiSeNet): each of the 4 aux heads weighted 1 with the main output's OHEM.
BISENET_LOSS = LossSpec(aux="ohem", aux_weight=1.0)


@dataclass(frozen=True)
class WeightSpec:
    """What ``--backbone-weights`` initialises in a network and where ImageNet weights come from.

    * ``label``: the weights' name in messages.
    * ``target``: dotted attribute of the model holding the weights (``""``: the model itself).
    * ``parts``: only these children of the target are loaded (e.g. LFD's two trunks); empty: all of it.
    * ``exclude``: submodules of the target never loaded (class-dependent classifiers).
    * ``imagenet``: torchvision weights member, e.g. ``"ResNet18_Weights.IMAGENET1K_V1"``; None: none exist.
    * ``imagenet_parts``: the children the ImageNet file covers when it is not the whole target (the rest stays
      randomly initialised, and a warning says so).
    * ``key_map``: ``"module:function"``, ``function(state, target) -> state`` mapping a loaded state dict's keys onto
      the target's (a key filter for torchvision files and the authors' layouts; own state dicts pass unchanged).
    * ``by_name``: load tensors matching by name and shape, the rest keeps its init (SANet, as its authors' loader);
      otherwise every tensor of the target must be in the file with its shape. With ``by_name``,
      ``class_dependent`` key prefixes whose shape differs (another class count) are skipped instead of an error.
    """

    label: str
    target: str = ""
    parts: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    imagenet: str | None = None
    imagenet_parts: tuple[str, ...] = ()
    key_map: str | None = None
    by_name: bool = False
    class_dependent: tuple[str, ...] = ()


@dataclass(frozen=True)
class Reference:
    """Cost measured from the authors' code (random weights): used parameters at 2 / 19 classes, MACs at 256² (2 cls).

    None = not given by the reference. ``note`` explains a deliberate difference, which the tests then expect.
    """

    params_2: int | None
    params_19: int | None
    macs_256: float | None
    note: str = ""


@dataclass(frozen=True)
class BackboneSpec:
    """A feature extractor of the ``anoseg.models.backbones`` contract, and its weights (``target`` is itself)."""

    name: str
    arch: str  # "module:callable" returning the backbone
    weights: WeightSpec
    kwargs: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class ModelSpec:
    """One registered segmenter. ``arch`` is ``"module:callable"``, called as ``arch(num_classes=..., **kwargs,
    **options)`` (plus ``backbone=`` when ``backbone`` names one); ``options`` are the user options it accepts."""

    name: str
    display_name: str
    family: str
    arch: str
    reference: Reference
    loss: LossSpec = MAIN_ONLY
    backbone: str | None = None
    weights: WeightSpec | None = None  # None: the backbone's
    kwargs: tuple[tuple[str, object], ...] = ()
    options: tuple[str, ...] = ()
    summary: str = ""

    @property
    def weight_spec(self) -> WeightSpec:
        """The weights this model's ``--backbone-weights`` initialises (its own, or its backbone's)."""
        if self.weights is not None:
            return self.weights
        assert self.backbone is not None, f"{self.name}: a record needs weights or a backbone"
        return replace(backbone_spec(self.backbone).weights, target="backbone")


_B = "anoseg.models.backbones"
BACKBONES: dict[str, BackboneSpec] = {b.name: b for b in (
    BackboneSpec("resnet18", f"{_B}.resnet:ResNet18Trunk", WeightSpec(
        "ResNet-18", imagenet="ResNet18_Weights.IMAGENET1K_V1"), kwargs=(("stages", 4),)),
    BackboneSpec("resnet18_deep", f"{_B}.resnet:DeepStemResNet18", WeightSpec(
        "the deep-stem ResNet-18 (resnet18-deep-inplane128)", key_map=f"{_B}.resnet:deep_stem_r18_keys")),
    BackboneSpec("resnet50_v1c", f"{_B}.resnet:ResNet50V1c", WeightSpec(
        "ResNet-50-V1c", imagenet="ResNet50_Weights.IMAGENET1K_V1",
        imagenet_parts=("layer1", "layer2", "layer3", "layer4"), key_map=f"{_B}.resnet:mmseg_v1c_keys")),
    BackboneSpec("stdc1", f"{_B}.stdc:STDCNet", WeightSpec("STDC1 (STDCNet813)", key_map=f"{_B}.stdc:stdc_keys"),
                 kwargs=(("layers", (2, 2, 2)),)),
    BackboneSpec("stdc2", f"{_B}.stdc:STDCNet", WeightSpec("STDC2 (STDCNet1446)", key_map=f"{_B}.stdc:stdc_keys"),
                 kwargs=(("layers", (4, 5, 3)),)),
    BackboneSpec("mobilenetv2", f"{_B}.mobilenet:MobileNetV2Backbone", WeightSpec(
        "MobileNetV2", imagenet="MobileNet_V2_Weights.IMAGENET1K_V1", key_map=f"{_B}.mobilenet:torchvision_keys")),
    BackboneSpec("shufflenet_v1_g8", f"{_B}.shufflenet:ShuffleNetV1Backbone", WeightSpec("ShuffleNet v1 (g=8)")),
    BackboneSpec("darknet19", f"{_B}.darknet:DarkNet19Backbone", WeightSpec("DarkNet19")),
)}

_M = "anoseg.models"
_LEDNET_NOTE = ("the spec's 925,014 at 19 classes also counts the encoder's output_conv, which the network never "
                "calls: 922,821 run")
_DARKNET_NOTE = ("fixed paddings keep the 1/16 maps at 16×16; the reference's wandering 18/20-px maps cost ~1 G more "
                 "(test_liteseg reproduces 7.831 G with the reference paddings)")

# The tuple order is the report order (families as in the papers' tables).
MODELS: dict[str, ModelSpec] = {m.name: m for m in (
    ModelSpec("lfd", "LFD", "LFD", f"{_M}.lfd:LFD", Reference(936_067, 938_260, 1.177e9),
              weights=WeightSpec("LFD ResNet-18", parts=("context", "detail"),
                                 imagenet="ResNet18_Weights.IMAGENET1K_V1", key_map=f"{_M}.lfd:torchvision_to_lfd"),
              options=("scale_factor",), summary="bilateral ResNet-18 segmenter (HUST-SLOW/LFD)"),
    *(ModelSpec(f"sanet_{v}", f"SANet-{v.upper()}", "SANet", f"{_M}.sanet:SANet", ref, loss=SANET_LOSS,
                weights=WeightSpec(f"SANet-{v.upper()} (DualResNet)", by_name=True,
                                   class_dependent=("head.conv2.", "aux_head.conv2."),
                                   key_map=f"{_M}.sanet:convert_author_state_dict"),
                kwargs=(("variant", v),), summary="spatial-assistant encoder-decoder (CuZaoo/SANet-main)")
      for v, ref in (("s", Reference(8_263_715, 8_264_820, 2.194e9)),
                     ("m", Reference(11_900_323, 11_901_428, 3.256e9)),
                     ("l", Reference(17_956_515, 17_957_620, 5.377e9)))),
    ModelSpec("liteseg_mobilenetv2", "LiteSeg-MobileNetV2", "LiteSeg", f"{_M}.liteseg:LiteSeg",
              Reference(3_100_058, 3_101_707, 0.570e9), backbone="mobilenetv2", kwargs=(("low_projection", None),),
              summary="DASPP head on MobileNetV2 (tahaemara/LiteSeg)"),
    ModelSpec("liteseg_shufflenet", "LiteSeg-ShuffleNet", "LiteSeg", f"{_M}.liteseg:LiteSeg",
              Reference(1_969_802, 1_971_451, 0.303e9), backbone="shufflenet_v1_g8",
              kwargs=(("low_projection", 48),), summary="DASPP head on ShuffleNet v1 g=8 (tahaemara/LiteSeg)"),
    ModelSpec("liteseg_darknet19", "LiteSeg-DarkNet19", "LiteSeg", f"{_M}.liteseg:LiteSeg",
              Reference(20_543_810, 20_545_459, 7.831e9, _DARKNET_NOTE), backbone="darknet19",
              kwargs=(("low_projection", 32),), summary="DASPP head on DarkNet19, stride 16 (tahaemara/LiteSeg)"),
    ModelSpec("lednet", "LEDNet", "LEDNet", f"{_M}.lednet:LEDNet", Reference(918_367, 922_821, 1.428e9, _LEDNET_NOTE),
              weights=WeightSpec("the LEDNet encoder", target="encoder"),
              summary="split-shuffle encoder + attention pyramid decoder (xiaoyufenfei/LEDNet)"),
    *(ModelSpec(f"sfnet_lite_{b}", f"SFNet-Lite-{b.upper()}", "SFNet", f"{_M}.sfnet_lite:SFNetLite", ref,
                backbone=backbone, summary=f"gated dual flow alignment head on {label} (lxtGH/SFSegNets)")
      for b, backbone, label, ref in (
          ("r18", "resnet18_deep", "a deep-stem ResNet-18", Reference(12_077_670, 12_079_863, 5.586e9)),
          ("stdc1", "stdc1", "STDC1", Reference(6_431_430, 6_433_623, 2.330e9)),
          ("stdc2", "stdc2", "STDC2", Reference(10_461_894, 10_464_087, 3.156e9)))),
    ModelSpec("sfnet_r18", "SFNet-R18", "SFNet", f"{_M}.sfnet_lite:SFNet", Reference(12_867_522, 12_869_715, 7.621e9),
              backbone="resnet18_deep", summary="SFNet v1 (ECCV'20): flow-aligned FPN on a deep-stem ResNet-18"),
    ModelSpec("bisenetv2", "BiSeNetV2", "BiSeNetV2", f"{_M}.bisenetv2:BiSeNetV2",
              Reference(3_341_202, 3_358_627, 3.085e9), loss=BISENET_LOSS, weights=WeightSpec("BiSeNetV2", exclude=(
                  "head.classifier", *(f"aux_heads.{i}.classifier" for i in range(4)))),
              summary="bilateral detail/semantic network, 4 aux heads in training (CoinCheung/BiSeNet)"),
    ModelSpec("upernet_r50", "UperNet-R50", "UperNet", f"{_M}.upernet:UperNet", Reference(64_041_826, None, None),
              backbone="resnet50_v1c", summary="UPerHead 512 on ResNet-50-V1c, decode head only (mmseg)"),
)}


def list_models() -> list[str]:
    """All registered model names, in report order (families as in the papers' tables)."""
    return list(MODELS)


def model_spec(name: str) -> ModelSpec:
    """The record of ``name``; an unknown name is an ``AnosegError`` listing the valid ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise AnosegError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}") from None


def backbone_spec(name: str) -> BackboneSpec:
    """The record of backbone ``name`` (``AnosegError`` when unknown)."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise AnosegError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}") from None


def _check_records() -> None:
    for spec in MODELS.values():
        if (spec.weights is None) == (spec.backbone is None):
            raise AssertionError(f"{spec.name}: give exactly one of weights / backbone")
        if spec.backbone is not None:
            backbone_spec(spec.backbone)


_check_records()
