"""The Python API contract of DESIGN.md: Explainer / Explanation and the standalone saved explainer."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

import onnx_lrp
import onnx_lrp.explainer as explainer_module
from model_builders import cnn, make_model, mlp, randn, run, vi

X_CNN = randn((5, 3, 8, 8), 100)


@pytest.fixture(scope="module")
def cnn_exp():
    return onnx_lrp.Explainer(cnn(), composite="epsilon_plus_flat")


def _bias_free_mlp():
    """Epsilon on a bias-free Relu network conserves: relevance sums to the explained logit."""
    model = mlp()
    for t in model.graph.initializer:
        if t.name in ("b1", "b2"):
            t.CopyFrom(onnx.numpy_helper.from_array(np.zeros(t.dims, np.float32), t.name))
    return model


# --- shapes and output ------------------------------------------------------------------------

def test_relevance_has_the_input_shape_and_output_the_logits(cnn_exp):
    res = cnn_exp.explain(X_CNN)
    assert res.relevance.shape == X_CNN.shape and res.relevance.dtype == np.float32
    logits = run(cnn(softmax=False), {"x": X_CNN})["logits"]
    np.testing.assert_allclose(res.output, logits, rtol=1e-5, atol=1e-6)
    assert res.target.shape == (5,) and res.target.dtype == np.int64
    assert np.isfinite(res.relevance).all() and np.abs(res.relevance).sum() > 0
    assert any("Softmax" in n for n in res.notes), "the user is told the softmax was stripped"


def test_input_copied_to_the_output_is_explained():
    """x -> Identity -> y survives canonization (both names must stay); it routes relevance."""
    model = make_model([helper.make_node("Identity", ["x"], ["y"])], [vi("x", ["N", 4])], [vi("y", ["N", 4])])
    x = randn((3, 4), 2)
    res = onnx_lrp.Explainer(model, composite="epsilon").explain(x, target=[0, 1, 3])
    expected = np.zeros_like(x)
    expected[[0, 1, 2], [0, 1, 3]] = x[[0, 1, 2], [0, 1, 3]]
    np.testing.assert_allclose(res.relevance, expected, rtol=1e-6)


def test_output_of_a_model_without_softmax():
    model = mlp()
    x = randn((3, 6), 101)
    res = onnx_lrp.Explainer(model).explain(x)
    np.testing.assert_allclose(res.output, run(model, {"x": x})["y"], rtol=1e-5, atol=1e-6)
    assert res.notes == []


# --- target ------------------------------------------------------------------------------------

def test_target_none_and_minus_one_explain_the_prediction(cnn_exp):
    res = cnn_exp.explain(X_CNN)
    pred = res.output.argmax(1)
    np.testing.assert_array_equal(res.target, pred)
    np.testing.assert_array_equal(res.prediction, pred)
    by_int = cnn_exp.explain(X_CNN, target=list(pred))
    np.testing.assert_array_equal(by_int.relevance, res.relevance)
    minus = cnn_exp.explain(X_CNN, target=-1)
    np.testing.assert_array_equal(minus.relevance, res.relevance)
    np.testing.assert_array_equal(minus.target, pred)


def test_int_target_and_list_of_targets():
    exp = onnx_lrp.Explainer(_bias_free_mlp(), composite="epsilon")
    x = randn((4, 6), 102)
    for t in range(4):
        res = exp.explain(x, target=t)
        np.testing.assert_array_equal(res.target, [t] * 4)
        np.testing.assert_allclose(res.relevance.sum(1), res.output[:, t], rtol=1e-4, atol=1e-5)
    targets = [3, 0, 2, 1]
    res = exp.explain(x, target=targets)
    np.testing.assert_array_equal(res.target, targets)
    np.testing.assert_allclose(res.relevance.sum(1), res.output[np.arange(4), targets], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(res.conservation(), 1.0, rtol=1e-4)
    for i, t in enumerate(targets):
        np.testing.assert_allclose(res.relevance[i], exp.explain(x[i:i + 1], target=t).relevance[0],
                                   rtol=1e-5, atol=1e-7)


def test_mixed_targets_with_minus_one():
    exp = onnx_lrp.Explainer(_bias_free_mlp(), composite="epsilon")
    x = randn((3, 6), 103)
    pred = exp.explain(x).target
    res = exp.explain(x, target=np.array([-1, 2, -1]))
    np.testing.assert_array_equal(res.target, [pred[0], 2, pred[2]])
    np.testing.assert_allclose(res.relevance.sum(1), res.output[np.arange(3), res.target], rtol=1e-4, atol=1e-5)


def test_different_targets_give_different_relevance(cnn_exp):
    a = cnn_exp.explain(X_CNN[:2], target=0).relevance
    b = cnn_exp.explain(X_CNN[:2], target=1).relevance
    assert np.abs(a - b).max() > 1e-3


# --- keep_layers -------------------------------------------------------------------------------

def test_keep_layers(cnn_exp):
    x = X_CNN[:3]
    plain = cnn_exp.explain(x)
    assert plain.layers == {}
    res = cnn_exp.explain(x, keep_layers=True)
    g = cnn_exp.graph(x.shape[1:])
    assert "x" in res.layers
    np.testing.assert_allclose(res.layers["x"], res.relevance, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(res.relevance, plain.relevance, rtol=1e-5, atol=1e-7)
    assert {"logits", "f", "r2", "p1"} <= set(res.layers), sorted(res.layers)
    for name, value in res.layers.items():
        assert name in g.relevant
        assert value.shape == (3,) + tuple(g.shape(name)[1:]), name
    # the seed: only the target logit carries relevance at the output
    seed = res.layers["logits"]
    onehot = np.eye(5, dtype=bool)[res.target]
    assert (seed[~onehot] == 0).all()
    np.testing.assert_allclose(seed[onehot], res.output[onehot], rtol=1e-6)


# --- batch size, dtype ---------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_any_batch_size_gives_per_sample_results(cnn_exp, n):
    x = X_CNN[:n]
    res = cnn_exp.explain(x, target=2)
    assert res.relevance.shape == x.shape
    for i in range(n):
        one = cnn_exp.explain(x[i:i + 1], target=2)
        np.testing.assert_allclose(res.relevance[i], one.relevance[0], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(res.output[i], one.output[0], rtol=1e-6, atol=1e-7)


def test_batch_size_argument_splits_runs_with_equal_results(cnn_exp):
    whole = cnn_exp.explain(X_CNN)
    split = cnn_exp.explain(X_CNN, batch_size=2)
    np.testing.assert_allclose(split.relevance, whole.relevance, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(split.target, whole.target)


def test_float64_input_is_cast_silently(cnn_exp):
    res64 = cnn_exp.explain(X_CNN[:2].astype(np.float64))
    res32 = cnn_exp.explain(X_CNN[:2])
    assert res64.relevance.dtype == np.float32
    np.testing.assert_array_equal(res64.relevance, res32.relevance)


def test_fixed_batch_model_explains_larger_batches():
    """A model exported with batch 1 baked in still explains N samples (one run each)."""
    model = cnn(batch=1)
    exp = onnx_lrp.Explainer(model)
    res = exp.explain(X_CNN[:3], target=1)
    for i in range(3):
        one = exp.explain(X_CNN[i:i + 1], target=1)
        np.testing.assert_allclose(res.relevance[i], one.relevance[0], rtol=1e-6, atol=1e-8)


def _fixed_batch_two():
    """Batch 2 baked into the graph: a Reshape to the constant shape (2, -1), as a static export makes."""
    r = np.random.default_rng(7)
    inits = {"w1": r.standard_normal((2, 3, 3, 3)).astype(np.float32), "shape": np.array([2, -1], np.int64),
             "wf": r.standard_normal((3, 32)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Reshape", ["r", "shape"], ["f"], name="reshape"),
             helper.make_node("Gemm", ["f", "wf"], ["y"], name="fc", transB=1)]
    return make_model(nodes, [vi("x", [2, 3, 4, 4])], [vi("y", [2, 3])], inits)


def test_fixed_batch_two_model_explains_even_batches():
    exp = onnx_lrp.Explainer(_fixed_batch_two())
    x = randn((4, 3, 4, 4), 106)
    res = exp.explain(x, target=0)
    np.testing.assert_allclose(res.relevance[2:], exp.explain(x[2:], target=0).relevance, rtol=1e-6, atol=1e-8)


def test_fixed_batch_two_model_explains_odd_batches():
    exp = onnx_lrp.Explainer(_fixed_batch_two())
    x = randn((3, 3, 4, 4), 107)
    res = exp.explain(x, target=0)
    assert res.relevance.shape == x.shape
    np.testing.assert_allclose(res.relevance[:2], exp.explain(x[:2], target=0).relevance, rtol=1e-6, atol=1e-8)


# --- session cache -----------------------------------------------------------------------------

def _dynamic_cnn():
    """cnn() with symbolic spatial dims, so two sample shapes are possible."""
    model = cnn()
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "H", "W"
    return model


def test_session_cache_per_sample_shape(monkeypatch):
    made = []
    real = explainer_module.make_session

    def counting(*args, **kwargs):
        made.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(explainer_module, "make_session", counting)
    exp = onnx_lrp.Explainer(_dynamic_cnn())
    first = exp.compile((3, 8, 8))
    exp.explain(X_CNN[:2])
    exp.explain(X_CNN[:4])
    assert exp.compile((3, 8, 8)) is first
    assert len(made) == 1, "the same sample shape reuses one session whatever the batch"
    exp.explain(randn((2, 3, 12, 12), 104))
    assert len(made) == 2, "a second sample shape compiles a second explainer"
    assert exp.compile((3, 12, 12)) is not first
    exp.explain(X_CNN[:1])
    assert len(made) == 2


# --- save --------------------------------------------------------------------------------------

def test_saved_explainer_runs_in_plain_onnxruntime(cnn_exp, tmp_path):
    path = tmp_path / "model.lrp.onnx"
    returned = cnn_exp.save(path)
    assert path.is_file() and str(returned) == str(path)
    saved = onnx.load(path)
    assert all(n.domain in ("", "ai.onnx") for n in saved.graph.node), "no custom ops in a standalone file"
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["x", "target"]
    assert sess.get_inputs()[1].type == "tensor(int64)"
    out_names = [o.name for o in sess.get_outputs()]
    assert out_names[:2] == ["relevance", "logits"]
    targets = np.array([-1, 3, -1, 0, 4], np.int64)
    relevance, output = sess.run(["relevance", "logits"], {"x": X_CNN, "target": targets})
    ref = cnn_exp.explain(X_CNN, target=targets)
    np.testing.assert_allclose(relevance, ref.relevance, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(output, ref.output, rtol=1e-6, atol=1e-7)
    # -1 is the predicted class
    pred_only = sess.run(["relevance"], {"x": X_CNN[:2], "target": np.array([-1, -1], np.int64)})[0]
    np.testing.assert_allclose(pred_only, cnn_exp.explain(X_CNN[:2]).relevance, rtol=1e-5, atol=1e-7)


def test_saved_explainer_passes_the_onnx_checker(cnn_exp, tmp_path):
    path = cnn_exp.save(tmp_path / "model.lrp.onnx")
    onnx.checker.check_model(onnx.load(path), full_check=True)


def test_save_of_a_dynamic_shape_model_needs_input_shape(tmp_path):
    exp = onnx_lrp.Explainer(_dynamic_cnn())
    with pytest.raises(onnx_lrp.InvalidInput, match="input_shape"):
        exp.save(tmp_path / "a.onnx")
    assert not (tmp_path / "a.onnx").exists()
    exp.save(tmp_path / "b.onnx", input_shape=(1, 3, 12, 12))
    sess = ort.InferenceSession(str(tmp_path / "b.onnx"), providers=["CPUExecutionProvider"])
    x = randn((2, 3, 12, 12), 105)
    relevance = sess.run(["relevance"], {"x": x, "target": np.array([1, 1], np.int64)})[0]
    np.testing.assert_allclose(relevance, exp.explain(x, target=1).relevance, rtol=1e-5, atol=1e-7)


# --- providers ---------------------------------------------------------------------------------

def test_providers_default_and_explicit():
    assert "CPUExecutionProvider" in onnx_lrp.Explainer(mlp()).providers
    for given in ("CPUExecutionProvider", ["CPUExecutionProvider"]):
        exp = onnx_lrp.Explainer(mlp(), providers=given)
        assert exp.providers == ["CPUExecutionProvider"]
        assert exp.explain(randn((2, 6))).relevance.shape == (2, 6)


def test_unknown_provider_names_the_available_ones():
    with pytest.raises(onnx_lrp.OnnxLrpError) as info:
        onnx_lrp.Explainer(mlp(), providers=["NoSuchExecutionProvider"])
    msg = str(info.value)
    assert "NoSuchExecutionProvider" in msg
    for p in ort.get_available_providers():
        assert p in msg


# --- composites ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", onnx_lrp.composites.names())
def test_every_preset_runs(name):
    kwargs = {"low": -3.0, "high": 3.0} if name == "epsilon_gamma_box" else {}
    res = onnx_lrp.Explainer(cnn(), composite=name, **kwargs).explain(X_CNN[:2])
    assert res.relevance.shape == (2, 3, 8, 8) and np.isfinite(res.relevance).all()
    assert np.abs(res.relevance).sum() > 0


def test_composite_object_is_accepted():
    comp = onnx_lrp.composites.EpsilonGammaBox(low=-3.0, high=3.0)
    by_obj = onnx_lrp.Explainer(cnn(), composite=comp).explain(X_CNN[:2]).relevance
    by_name = onnx_lrp.Explainer(cnn(), composite="epsilon_gamma_box", low=-3.0, high=3.0).explain(X_CNN[:2])
    np.testing.assert_array_equal(by_obj, by_name.relevance)
