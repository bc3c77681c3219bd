"""Backbones: one contract for every feature extractor a segmenter is built on (cf. segmentation_models.pytorch's
encoders).

A :class:`Backbone` maps an image ``(N, 3, H, W)`` to a ``list[Tensor]`` of feature maps, finest first, and says
what they are: ``out_channels[i]`` channels at ``H / reductions[i]``. ``load_weights("imagenet" | "none" | PATH)``
initialises it as its registry record (``anoseg.models.registry.BACKBONES``) says. ImageNet classifiers are never
built.

* ``resnet``: torchvision's ResNet-18 trunk (LFD), SFNet's deep-stem ResNet-18, mmseg's ResNet-50-V1c.
* ``stdc``: STDC1 / STDC2 (STDC-Seg).
* ``mobilenet``, ``shufflenet``, ``darknet``: LiteSeg's MobileNetV2, ShuffleNet v1 (g = 8) and DarkNet19.
"""

from anoseg.models.backbones.base import Backbone

__all__ = ["Backbone"]
