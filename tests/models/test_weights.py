"""Backbone-weight provenance: the record says what was loaded, and nothing is downloaded unless asked for."""

from __future__ import annotations

import hashlib

import pytest
import torch
from torchvision.models import ResNet18_Weights, resnet18

import anoseg.models.weights as weights_module
from anoseg.models import create_model
from anoseg.models.weights import (
    DOWNLOAD_ENV,
    RANDOM_IMAGENET_UNAVAILABLE,
    cached_weights_file,
    weights_provenance,
)


def test_imagenet_offline_records_random_init_and_attempts_no_download(offline, capfd):
    torch.manual_seed(0)
    model = create_model("lfd", backbone_weights="imagenet")
    torch.manual_seed(0)
    plain = create_model("lfd", backbone_weights="none")
    assert weights_provenance(model, "imagenet") == RANDOM_IMAGENET_UNAVAILABLE == "random (imagenet unavailable)"
    assert weights_provenance(plain, "none") == "none"
    assert offline == []  # no download attempted
    err = capfd.readouterr().err
    assert "Downloading" not in err
    assert err.count("ImageNet weights for LFD ResNet-18 are not in the torch cache") == 1
    assert "--download-weights" in err
    for (key, value), same in zip(model.state_dict().items(), plain.state_dict().values(), strict=True):
        assert torch.equal(value, same), key


def test_imagenet_from_the_cache_is_recorded_as_imagenet(offline):
    torch.manual_seed(3)
    reference = resnet18(weights=None).state_dict()
    file = cached_weights_file(ResNet18_Weights.IMAGENET1K_V1)
    file.parent.mkdir(parents=True)
    torch.save(reference, file)
    model = create_model("lfd", backbone_weights="imagenet")
    assert weights_provenance(model, "imagenet") == "imagenet"
    assert torch.equal(model.context.conv1.weight, reference["conv1.weight"])
    assert offline == []


def test_download_only_when_asked(offline, monkeypatch):
    reference = resnet18(weights=None).state_dict()
    calls = []

    def fake_download(url, **kwargs):
        calls.append((url, kwargs.get("check_hash")))
        return reference

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_download)
    assert weights_provenance(create_model("lfd", backbone_weights="imagenet"), "imagenet") == \
        RANDOM_IMAGENET_UNAVAILABLE
    assert calls == []
    monkeypatch.setenv(DOWNLOAD_ENV, "1")
    model = create_model("lfd", backbone_weights="imagenet")
    assert calls == [(ResNet18_Weights.IMAGENET1K_V1.url, True)]
    assert weights_provenance(model, "imagenet") == "imagenet"


@pytest.mark.parametrize("name", ["lfd", "sanet_s"])  # generic loader and SANet's own name-matching loader
def test_weight_file_is_recorded_with_its_hash(tmp_path, name):
    source = create_model(name, backbone_weights="none")
    state = source.state_dict() if name == "sanet_s" else resnet18(weights=None).state_dict()
    file = tmp_path / "weights.pth"
    torch.save(state, file)
    model = create_model(name, backbone_weights=str(file))
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    expected = f"file {file.resolve()} sha256:{digest}"
    if name == "sanet_s":  # the name-matching loader also records how much of the file it used
        expected += f" ({len(state)} of {len(state)} tensors)"
    assert weights_provenance(model, str(file)) == expected


def test_backbone_without_torchvision_weights_records_random(offline):
    model = create_model("lednet", backbone_weights="imagenet")
    assert weights_provenance(model, "imagenet") == RANDOM_IMAGENET_UNAVAILABLE
    assert offline == []


def test_cached_file_that_cannot_be_read_warns_and_stays_random(offline, monkeypatch):
    file = cached_weights_file(ResNet18_Weights.IMAGENET1K_V1)
    file.parent.mkdir(parents=True)
    file.write_text("not a checkpoint")
    messages: list[str] = []
    monkeypatch.setattr(weights_module, "warn_once", messages.append)
    model = create_model("lfd", backbone_weights="imagenet")
    assert weights_provenance(model, "imagenet") == RANDOM_IMAGENET_UNAVAILABLE
    assert any(str(file) in m for m in messages) and offline == []
