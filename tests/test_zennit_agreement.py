"""Agreement of onnx-lrp with Zennit 0.5.1 on stored reference fixtures.

The fixtures (``tests/fixtures/zennit``) are reduced torchvision VGG-BN / ResNet models exported
to ONNX, with the relevance Zennit's ``Gradient`` attributor computed for them in float32 (see
the README there and ``tools/make_zennit_fixtures.py``, which needs torch; this test does not).
"""
import pathlib

import numpy as np
import pytest

import onnx_lrp

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "zennit"

MODELS = ("vgg_bn_small", "resnet18_small", "resnet_bottleneck_small")
COMPOSITES = ("epsilon_plus_flat", "epsilon_alpha2_beta1_flat", "epsilon_gamma_box")

MIN_PEARSON = 0.9999
MAX_RELATIVE_ERROR = 1e-3  # max|R - R_zennit| / max|R_zennit|, per sample


def load_fixture(model, composite):
    onnx_path = FIXTURES / f"{model}.onnx"
    npz_path = FIXTURES / f"{model}__{composite}.npz"
    assert onnx_path.is_file(), f"missing fixture {onnx_path}; run tools/make_zennit_fixtures.py"
    assert npz_path.is_file(), f"missing fixture {npz_path}; run tools/make_zennit_fixtures.py"
    with np.load(npz_path) as data:
        arrays = {key: data[key] for key in data.files}
    return onnx_path, arrays


def composite_for(name, arrays):
    if name == "epsilon_gamma_box":
        return onnx_lrp.composites.EpsilonGammaBox(low=arrays["low"], high=arrays["high"])
    return name


def pearson(a, b):
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    return float(np.corrcoef(a, b)[0, 1])


@pytest.mark.parametrize("composite", COMPOSITES)
@pytest.mark.parametrize("model", MODELS)
def test_relevance_matches_zennit(model, composite):
    onnx_path, arrays = load_fixture(model, composite)
    x, target, expected = arrays["x"], arrays["target"], arrays["relevance"]

    explainer = onnx_lrp.Explainer(str(onnx_path), composite=composite_for(composite, arrays))
    result = explainer.explain(x, target=target)

    np.testing.assert_allclose(np.asarray(result.output), arrays["logits"], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(result.target), target)
    relevance = np.asarray(result.relevance)
    assert relevance.shape == x.shape

    for sample, (ours, reference) in enumerate(zip(relevance, expected)):
        correlation = pearson(ours, reference)
        error = np.abs(ours.astype(np.float64) - reference).max() / np.abs(reference).max()
        assert correlation >= MIN_PEARSON, (
            f"{model} / {composite}, sample {sample} (target {target[sample]}): "
            f"Pearson {correlation:.6f} < {MIN_PEARSON}")
        assert error <= MAX_RELATIVE_ERROR, (
            f"{model} / {composite}, sample {sample} (target {target[sample]}): "
            f"max|R - R_zennit| / max|R_zennit| = {error:.2e} > {MAX_RELATIVE_ERROR}")


def test_fixtures_are_nontrivial():
    """Guards the fixtures themselves: inputs have both signs, targets are not all predicted."""
    for model in MODELS:
        for composite in COMPOSITES:
            _, arrays = load_fixture(model, composite)
            assert arrays["x"].dtype == np.float32 and arrays["relevance"].dtype == np.float32
            assert arrays["target"].dtype == np.int64
            assert arrays["x"].min() < 0 < arrays["x"].max()
            assert np.all(np.abs(arrays["relevance"]).reshape(len(arrays["x"]), -1).max(axis=1) > 0)
            assert np.any(arrays["logits"].argmax(axis=1) != arrays["target"])
            if composite == "epsilon_gamma_box":
                assert arrays["low"].shape == arrays["high"].shape == (1, 3, 1, 1)
                assert np.all(arrays["low"] < arrays["high"])
