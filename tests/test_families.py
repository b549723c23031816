"""Architecture families exported by both torch exporters (tests/fixtures/families, built by
tools/make_family_fixtures.py; no torch here).

Reduced torchvision VGG-16-BN, ResNet-50 (Bottleneck), DenseNet-121, MobileNetV2, MobileNetV3-Small,
EfficientNet-B0, SqueezeNet 1.1, GoogLeNet, ConvNeXt-Tiny, a 1-D conv net and an MLP, each as
``<family>.torchscript.onnx`` (``dynamo=False``, opset 17) and ``<family>.dynamo.onnx``
(``dynamo=True``, opset 18). For every file: the canonized model computes torch's logits, the
default composite and epsilon_gamma_box give finite relevance, and LRP-0 on the bias-free model
conserves relevance (ConvNeXt's dynamo export excepted, see NOT_CONSERVING); for VGG-BN, ResNet and MobileNetV2
the relevance agrees with Zennit 0.5.1's.
"""
from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

import onnx_lrp
from family_helpers import (CONSERVATION_RTOL, assert_agrees_with_zennit, conservation_error, gamma_box_for,
                            lrp0_composite, op_types, without_biases)

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "families"
MANIFEST = json.loads((FIXTURES / "MANIFEST.json").read_text())
FAMILIES = sorted(MANIFEST)
EXPORTERS = ("torchscript", "dynamo")
CASES = [(f, e) for f in FAMILIES for e in EXPORTERS]

#: (family, exporter) whose relevance LRP-0 does not conserve within 1e-3 in float32, and why (measured).
NOT_CONSERVING = {
    ("convnext_tiny", "dynamo"): (
        "ill-conditioned, not a non-conserving op (each op conserves to float32 rounding): ConvNeXt's residual "
        "sums x + γ·block(x) feed a LayerNorm, not a ReLU, so the relevance arriving at a sum is not "
        "proportional to its value and Norm's x·R/(x + y) grows without bound where the branches cancel; "
        "relevance magnitudes reach 5e4 times the total and float32 cancellation leaves 7e-3 on one sample "
        "(the TorchScript export of the same model: 7e-4)"),
}
ZENNIT_COMPOSITES = ("epsilon_plus_flat", "epsilon_alpha2_beta1_flat", "epsilon_gamma_box")


def path_of(family, exporter) -> pathlib.Path:
    return FIXTURES / MANIFEST[family]["files"][exporter]["file"]


def inputs_of(family):
    with np.load(FIXTURES / f"{family}__inputs.npz") as data:
        return data["x"], data["logits"]


def test_every_family_is_stored_for_both_exporters():
    expected = {"vgg16_bn", "resnet50", "densenet121", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0",
                "squeezenet1_1", "googlenet", "convnext_tiny", "conv1d", "mlp"}
    assert set(FAMILIES) == expected
    for family in FAMILIES:
        for exporter in EXPORTERS:
            assert path_of(family, exporter).is_file()
    total = sum(p.stat().st_size for p in FIXTURES.iterdir())
    assert total < 8e6, f"the family fixtures take {total / 1e6:.1f} MB"


def test_fixtures_exercise_the_patterns_they_are_here_for():
    """Guards the fixtures: the ops each family is meant to bring are in the exported graphs."""
    ts = {f: op_types(path_of(f, "torchscript")) for f in FAMILIES}
    assert {"Sigmoid", "Mul"} <= ts["efficientnet_b0"]                 # SiLU and SE gates
    assert {"HardSwish", "HardSigmoid", "Mul"} <= ts["mobilenet_v3_small"]
    assert {"LayerNormalization", "Erf"} <= ts["convnext_tiny"]        # LayerNorm2d, Erf-GELU
    assert "Concat" in ts["densenet121"] and "Concat" in ts["googlenet"] and "Concat" in ts["squeezenet1_1"]
    assert "Clip" in ts["mobilenet_v2"]                                # ReLU6
    assert "Gather" in op_types(path_of("convnext_tiny", "dynamo"))    # torch.export's as_strided
    assert "BatchNormalization" in ts["densenet121"]                   # BN after Concat: not foldable


@pytest.mark.parametrize("family,exporter", CASES)
def test_canonized_model_computes_torch_logits(family, exporter):
    x, logits = inputs_of(family)
    result = onnx_lrp.Explainer(str(path_of(family, exporter))).explain(x)
    np.testing.assert_allclose(result.output, logits, rtol=1e-4, atol=1e-4 * np.abs(logits).max())
    assert result.relevance.shape == x.shape


@pytest.mark.parametrize("family,exporter", CASES)
@pytest.mark.parametrize("composite", ["default", "epsilon_gamma_box"])
def test_relevance_is_finite(family, exporter, composite):
    x, _ = inputs_of(family)
    chosen = onnx_lrp.composites.DEFAULT if composite == "default" else gamma_box_for(x)
    result = onnx_lrp.Explainer(str(path_of(family, exporter)), composite=chosen).explain(x)
    assert np.isfinite(result.relevance).all()
    assert np.all(np.abs(result.relevance).reshape(len(x), -1).max(axis=1) > 0)


@pytest.mark.parametrize("family,exporter", CASES)
def test_lrp0_conserves_relevance_without_biases(family, exporter):
    if (family, exporter) in NOT_CONSERVING:
        pytest.xfail(NOT_CONSERVING[family, exporter])
    x, _ = inputs_of(family)
    error = conservation_error(str(path_of(family, exporter)), x)
    assert error.max() <= CONSERVATION_RTOL, f"{family}/{exporter}: |sum R / target - 1| = {error}"


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_convnext_relevance_is_ill_conditioned(exporter):
    """Why ConvNeXt sits at the edge of the conservation tolerance: LRP-0's relevance magnitudes
    dwarf the total it sums to, so float32 rounding of them is of the order of 1e-3 of the total."""
    x, _ = inputs_of("convnext_tiny")
    canonized, store = without_biases(str(path_of("convnext_tiny", exporter)))
    result = onnx_lrp.Explainer(canonized, composite=lrp0_composite()).explain(x, keep_layers=True)
    per_sample = [v for v in result.layers.values() if v.shape[0] == len(x)]
    magnitude = np.max([np.abs(v).reshape(len(x), -1).sum(1) for v in per_sample], axis=0)
    assert np.all(magnitude > 1e3 * np.abs(result.target_output)), magnitude / np.abs(result.target_output)
    error = np.abs(result.conservation() - 1)
    rounding = 2 ** -23 * magnitude / np.abs(result.target_output)
    assert np.all(error < 100 * rounding), "the error is not explained by float32 rounding of the magnitudes"


ZENNIT_CASES = [(f, e, c) for f in FAMILIES if "zennit" in MANIFEST[f] for e in EXPORTERS for c in ZENNIT_COMPOSITES]


@pytest.mark.parametrize("family,exporter,composite", ZENNIT_CASES)
def test_agrees_with_zennit(family, exporter, composite):
    with np.load(FIXTURES / f"{family}__{composite}.npz") as data:
        arrays = {k: data[k] for k in data.files}
    chosen = composite if composite != "epsilon_gamma_box" else onnx_lrp.composites.EpsilonGammaBox(
        low=arrays["low"], high=arrays["high"])
    result = onnx_lrp.Explainer(str(path_of(family, exporter)), composite=chosen).explain(
        arrays["x"], target=arrays["target"])
    np.testing.assert_allclose(result.output, arrays["logits"], rtol=1e-4, atol=1e-4)
    assert_agrees_with_zennit(result.relevance, arrays["relevance"], f"{family}/{exporter}/{composite}")


def test_zennit_fixtures_are_nontrivial():
    families = [f for f in FAMILIES if "zennit" in MANIFEST[f]]
    assert set(families) == {"vgg16_bn", "resnet50", "mobilenet_v2"}
    for family in families:
        for composite in ZENNIT_COMPOSITES:
            with np.load(FIXTURES / f"{family}__{composite}.npz") as data:
                assert data["x"].min() < 0 < data["x"].max()
                assert np.any(data["logits"].argmax(axis=1) != data["target"]), "some target is not the prediction"
                assert np.all(np.abs(data["relevance"]).reshape(len(data["x"]), -1).max(axis=1) > 0)
