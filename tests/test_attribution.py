"""Baseline attributions (onnx_lrp.attribution): the compiled gradient against float64 finite
differences, every method against Zennit / reference torch math from stored fixtures
(tools/make_attribution_fixtures.py), and cases whose answer is known by construction."""
from __future__ import annotations

import gc
import pathlib
import weakref

import numpy as np
import pytest

import onnx_lrp
from eval_models import SmallCNN, linear, relu_mlp
from onnx_lrp.attribution import METHODS, attribute, attributor
from onnx_lrp.errors import InvalidInput

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "attribution"
ZENNIT = pathlib.Path(__file__).parent / "fixtures" / "zennit"


@pytest.fixture(scope="module")
def cnn():
    net = SmallCNN(seed=3)
    return net, onnx_lrp.Explainer(net.onnx())


@pytest.fixture(scope="module")
def x_cnn():
    return np.random.default_rng(11).standard_normal((3,) + SmallCNN.SAMPLE).astype(np.float32)


# --- gradient against finite differences -----------------------------------------------------

def test_numpy_oracle_is_the_onnx_model(cnn, x_cnn):
    net, exp = cnn
    out = attributor(exp).forward(x_cnn)
    np.testing.assert_allclose(out, net.forward(x_cnn), rtol=1e-5, atol=1e-5)


def test_gradient_matches_central_differences(cnn, x_cnn):
    """Central differences of the float64 numpy network (step 1e-6: truncation ~1e-12, rounding
    ~1e-10) against the float32 onnxruntime gradient: agreement to float32 precision."""
    net, exp = cnn
    target = np.array([0, 3, 4])
    grad = attribute(exp, x_cnn, target, "gradient")
    x64 = x_cnn.astype(np.float64)
    fd = np.zeros_like(x64)
    h = 1e-6
    for idx in np.ndindex(x64.shape[1:]):
        e = np.zeros_like(x64)
        e[(slice(None),) + idx] = h
        up, down = net.forward(x64 + e), net.forward(x64 - e)
        fd[(slice(None),) + idx] = (up - down)[np.arange(3), target] / (2 * h)
    scale = np.abs(fd).max()
    assert scale > 0.1
    np.testing.assert_allclose(grad, fd, rtol=0, atol=1e-5 * scale)


def test_gradient_of_a_linear_model_is_its_weight_column():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((12, 3)).astype(np.float32)
    exp = onnx_lrp.Explainer(linear(w, [0.5, -1, 2], (12,)))
    x = rng.standard_normal((4, 12)).astype(np.float32)
    grad = attribute(exp, x, [0, 1, 2, 1], "gradient")
    np.testing.assert_allclose(grad, w[:, [0, 1, 2, 1]].T, rtol=1e-6)
    np.testing.assert_allclose(attribute(exp, x, [0, 1, 2, 1], "input_x_gradient"), x * w[:, [0, 1, 2, 1]].T,
                               rtol=1e-6)
    np.testing.assert_allclose(attribute(exp, x, [0, 1, 2, 1], "saliency"), np.abs(w[:, [0, 1, 2, 1]].T),
                               rtol=1e-6)


# --- by construction ---------------------------------------------------------------------------

def test_integrated_gradients_of_a_linear_model_is_exact_for_any_steps():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((10, 2)).astype(np.float32)
    exp = onnx_lrp.Explainer(linear(w, [0.3, 0.0], (10,)))
    x = rng.standard_normal((3, 10)).astype(np.float32)
    baseline = rng.standard_normal(10).astype(np.float32)
    for steps in (1, 7):
        ig = attribute(exp, x, 1, "integrated_gradients", steps=steps, baseline=baseline)
        np.testing.assert_allclose(ig, (x - baseline) * w[:, 1], rtol=1e-5, atol=1e-6)


def test_integrated_gradients_is_complete_on_the_cnn(cnn, x_cnn):
    """Σ IG = f(x) − f(0) up to the Riemann error; with 1024 steps on this piecewise-smooth
    network that error is below 1e-2 of the output difference."""
    net, exp = cnn
    target = np.array([1, 1, 2])
    ig = attribute(exp, x_cnn, target, "integrated_gradients", steps=1024, batch_size=512)
    diff = (net.forward(x_cnn) - net.forward(np.zeros_like(x_cnn)))[np.arange(3), target]
    np.testing.assert_allclose(ig.reshape(3, -1).sum(1), diff, rtol=1e-2, atol=1e-3)


def test_smoothgrad_with_one_sample_is_the_gradient_and_is_seeded(cnn, x_cnn):
    _, exp = cnn
    np.testing.assert_array_equal(attribute(exp, x_cnn, 2, "smoothgrad", samples=1),
                                  attribute(exp, x_cnn, 2, "gradient"))
    a = attribute(exp, x_cnn, 2, "smoothgrad", samples=5, seed=4)
    np.testing.assert_array_equal(a, attribute(exp, x_cnn, 2, "smoothgrad", samples=5, seed=4, batch_size=2))
    assert not np.allclose(a, attribute(exp, x_cnn, 2, "smoothgrad", samples=5, seed=5))


def test_occlusion_with_unit_windows_of_a_linear_model_is_input_times_weight():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((2 * 3 * 4, 2)).astype(np.float32)
    exp = onnx_lrp.Explainer(linear(w, [1.0, 0.0], (2, 3, 4)))
    x = rng.standard_normal((2, 2, 3, 4)).astype(np.float32)
    occ = attribute(exp, x, 0, "occlusion", window=1, stride=1, baseline=0.0)
    # a 1×1 window covers both channels of a pixel: the drop is Σ_c w_c x_c for that pixel
    per_pixel = (x * w[:, 0].reshape(2, 3, 4)).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(occ, np.broadcast_to(per_pixel, x.shape), rtol=1e-5, atol=1e-6)


def test_occlusion_averages_overlapping_windows():
    """1-D input of 5 features, window 2, stride 2 (+ a last window at 3): windows {0,1}, {2,3},
    {3,4}; feature 3 is covered twice and gets the mean of the two drops."""
    w = np.arange(1, 6, dtype=np.float32)[:, None]
    exp = onnx_lrp.Explainer(linear(w, [0.0], (5,)))
    x = np.ones((1, 5), np.float32)
    occ = attribute(exp, x, 0, "occlusion", window=2, stride=2)
    np.testing.assert_allclose(occ[0], [3, 3, 7, (7 + 9) / 2, 9], rtol=1e-6)


def test_a_model_with_a_fixed_batch_size_gets_padded_chunks():
    rng = np.random.default_rng(8)
    w = rng.standard_normal((6, 2)).astype(np.float32)
    exp = onnx_lrp.Explainer(linear(w, [0.0, 0.0], (6,), batch=4))
    x = rng.standard_normal((5, 6)).astype(np.float32)
    np.testing.assert_allclose(attribute(exp, x, 1, "gradient", batch_size=3), np.tile(w[:, 1], (5, 1)), rtol=1e-6)
    np.testing.assert_allclose(attribute(exp, x, 0, "occlusion", window=1), x * w[:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(attribute(exp, x, 0, "integrated_gradients", steps=3), x * w[:, 0], rtol=1e-5,
                               atol=1e-6)


def test_random_is_seeded_and_model_free(cnn, x_cnn):
    _, exp = cnn
    a = attribute(exp, x_cnn, None, "random", seed=3)
    np.testing.assert_array_equal(a, attribute(exp, x_cnn, None, "random", seed=3))
    assert a.shape == x_cnn.shape and not np.array_equal(a, attribute(exp, x_cnn, None, "random", seed=4))


def test_lrp_method_is_the_explainer_and_takes_a_composite():
    model = relu_mlp((8,), 16, 3, seed=5)
    exp = onnx_lrp.Explainer(model)
    x = np.random.default_rng(3).standard_normal((4, 8)).astype(np.float32)
    np.testing.assert_array_equal(attribute(exp, x, None, "lrp"), exp.explain(x).relevance)
    eps = attribute(exp, x, None, "lrp", composite="epsilon")
    np.testing.assert_allclose(eps, onnx_lrp.Explainer(model, composite="epsilon").explain(x).relevance,
                               rtol=1e-6, atol=1e-7)


def test_target_none_is_the_prediction_and_paths_are_accepted(cnn, x_cnn, tmp_path):
    net, exp = cnn
    predicted = net.forward(x_cnn).argmax(1)
    np.testing.assert_array_equal(attribute(exp, x_cnn, None, "gradient"),
                                  attribute(exp, x_cnn, predicted, "gradient"))
    path = tmp_path / "cnn.onnx"
    import onnx
    onnx.save(net.onnx(), path)
    np.testing.assert_array_equal(attribute(str(path), x_cnn, 1, "gradient"), attribute(exp, x_cnn, 1, "gradient"))


def test_errors_name_the_method_and_options(cnn, x_cnn):
    _, exp = cnn
    with pytest.raises(InvalidInput, match="unknown attribution method 'nope'"):
        attribute(exp, x_cnn, None, "nope")
    with pytest.raises(InvalidInput, match="method 'gradient'.*window"):
        attribute(exp, x_cnn, None, "gradient", window=3)
    with pytest.raises(InvalidInput, match="steps"):
        attribute(exp, x_cnn, None, "integrated_gradients", steps=0)
    with pytest.raises(InvalidInput, match="baseline"):
        attribute(exp, x_cnn, None, "integrated_gradients", baseline=np.zeros(5))


def test_registry_lists_the_methods():
    assert {"lrp", "gradient", "saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "occlusion",
            "random"} <= set(METHODS)


# --- against Zennit / reference torch math -------------------------------------------------

@pytest.mark.parametrize("model", ["vgg_bn_small", "resnet18_small"])
def test_agreement_with_zennit_and_reference_fixtures(model):
    """float32 vs float32: the fixtures' float32-vs-float64 noise is ≤ 4e-6 of max|R| (printed by
    the fixture script), so 1e-4 leaves headroom without hiding a wrong result."""
    d = dict(np.load(FIXTURES / f"{model}.npz"))
    exp = onnx_lrp.Explainer(str(ZENNIT / f"{model}.onnx"))
    x, t = d["x"], d["target"]
    ours = {
        "gradient": attribute(exp, x, t, "gradient"),
        "integrated_gradients": attribute(exp, x, t, "integrated_gradients", steps=int(d["ig_steps"])),
        "integrated_gradients_shifted": attribute(exp, x, t, "integrated_gradients", steps=int(d["ig_steps"]),
                                                  baseline=float(d["ig_baseline"])),
        "smoothgrad": attribute(exp, x, t, "smoothgrad", samples=int(d["sg_samples"]), noise=float(d["sg_noise"]),
                                seed=int(d["sg_seed"])),
        "occlusion": attribute(exp, x, t, "occlusion", window=int(d["occ_window"]), stride=int(d["occ_stride"])),
    }
    for name, value in ours.items():
        ref = d[name]
        for sample in range(len(x)):
            err = np.abs(value[sample] - ref[sample]).max() / np.abs(ref[sample]).max()
            assert err < 1e-4, f"{model} {name} sample {sample}: max|d|/max|R| = {err:.2e}"


def test_attributor_cache_releases_its_explainer():
    """The attributor is cached on its explainer; both go when the caller drops the explainer (a
    module-level weak-key cache kept every explainer alive through its attributor)."""
    explainer = onnx_lrp.Explainer(SmallCNN(seed=0).onnx())
    assert attributor(explainer) is attributor(explainer)
    gone = weakref.ref(explainer)
    del explainer
    gc.collect()
    assert gone() is None
