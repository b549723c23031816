"""Models that already use the explainer's own names (``target``, ``relevance``, the layer outputs).

Every name the compiler adds comes from one allocator that avoids the model's names; the
explainer's extra input and output keep their documented names when free and take a fresh
variant (exposed on :class:`~onnx_lrp.compile.Compiled`) when not.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

import onnx_lrp
from onnx_lrp.attribution import attribute
from model_builders import make_model, randn, run, vi


def _dense(inp: str = "x", hidden: str = "h", out: str = "y") -> onnx.ModelProto:
    """inp (N,4) -> Gemm (no bias) -> Relu -> Gemm (no bias) -> out (N,3): LRP-0 conserves."""
    r = np.random.default_rng(3)
    nodes = [helper.make_node("Gemm", [inp, "w1"], [hidden], name="fc1", transB=1),
             helper.make_node("Relu", [hidden], ["act"], name="relu"),
             helper.make_node("Gemm", ["act", "w2"], [out], name="fc2", transB=1)]
    inits = {"w1": r.standard_normal((5, 4)).astype(np.float32),
             "w2": r.standard_normal((3, 5)).astype(np.float32)}
    return make_model(nodes, [vi(inp, ["N", 4])], [vi(out, ["N", 3])], inits)


CASES = {
    "input named target": dict(inp="target"),
    "input named relevance": dict(inp="relevance"),
    "output named target": dict(out="target"),
    "output named relevance": dict(out="relevance"),
    "inner tensor named relevance": dict(hidden="relevance"),
    "inner tensor named target": dict(hidden="target"),
    "both names taken": dict(inp="target", out="relevance"),
    "the fresh variant taken too": dict(inp="target", hidden="target_1", out="relevance"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_explains_a_model_using_the_explainers_names(case):
    model = _dense(**CASES[case])
    x = randn((3, 4), 7)
    exp = onnx_lrp.Explainer(model, composite="epsilon", epsilon=0.0)
    res = exp.explain(x)
    reference = run(model, {model.graph.input[0].name: x})[model.graph.output[0].name]
    np.testing.assert_allclose(res.output, reference, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(res.conservation(), 1.0, rtol=1e-5)
    compiled = exp.compile((4,))
    model_names = {model.graph.input[0].name, model.graph.output[0].name} | {
        t for n in model.graph.node for t in n.output}
    assert compiled.target_name not in model_names and compiled.relevance_name not in model_names
    assert compiled.target_name != compiled.relevance_name


def test_free_names_stay_target_and_relevance():
    compiled = onnx_lrp.Explainer(_dense()).compile((4,))
    assert (compiled.target_name, compiled.relevance_name) == ("target", "relevance")
    assert [i.name for i in compiled.model.graph.input] == ["x", "target"]
    assert [o.name for o in compiled.model.graph.output][:2] == ["relevance", "y"]


def test_taken_names_get_fresh_variants_in_the_graph():
    compiled = onnx_lrp.Explainer(_dense(inp="target", out="relevance")).compile((4,))
    assert (compiled.target_name, compiled.relevance_name) == ("target_1", "relevance_1")
    assert [i.name for i in compiled.model.graph.input] == ["target", "target_1"]
    assert [o.name for o in compiled.model.graph.output][:2] == ["relevance_1", "relevance"]


def test_keep_layers_names_do_not_collide():
    # a model tensor already named like a layer output the explainer would add
    model = _dense(hidden="h", out="relevance:h")
    exp = onnx_lrp.Explainer(model, composite="epsilon", epsilon=0.0)
    res = exp.explain(randn((2, 4), 1), keep_layers=True)
    compiled = exp.compile((4,), keep_layers=True)
    assert compiled.layers["h"] != "relevance:h"
    np.testing.assert_allclose(res.layers["h"].sum(axis=1), res.target_output, rtol=1e-5)


def test_saved_explainer_with_taken_names_runs_in_plain_onnxruntime(tmp_path):
    model = _dense(inp="target", out="relevance")
    exp = onnx_lrp.Explainer(model, composite="epsilon", epsilon=0.0)
    path = exp.save(tmp_path / "explainer.onnx", input_shape=(1, 4))
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    compiled = exp.compile((4,))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = randn((2, 4), 5)
    relevance, output = sess.run([compiled.relevance_name, "relevance"],
                                 {"target": x, compiled.target_name: np.array([1, -1], np.int64)})
    expected = exp.explain(x, target=[1, -1])
    np.testing.assert_allclose(relevance, expected.relevance, rtol=1e-6)
    np.testing.assert_allclose(output, expected.output, rtol=1e-6)


def test_gradient_attribution_with_taken_names():
    model = _dense(inp="target", out="relevance")
    x = randn((2, 4), 9)
    grad = attribute(onnx_lrp.Explainer(model), x, [0, 2], "gradient")
    # finite differences of the model itself
    eps, expected = 1e-2, np.zeros_like(x, np.float64)
    for i in range(4):
        step = np.zeros_like(x)
        step[:, i] = eps
        up = run(model, {"target": x + step})["relevance"].astype(np.float64)
        down = run(model, {"target": x - step})["relevance"].astype(np.float64)
        expected[:, i] = ((up - down) / (2 * eps))[np.arange(2), [0, 2]]
    np.testing.assert_allclose(grad, expected, rtol=1e-3, atol=1e-4)


def test_weights_input_name_taken():
    """Weights over the output feed an input ``target_weights``; a model tensor of that name
    makes it take a fresh one."""
    model = _dense(hidden="target_weights")
    exp = onnx_lrp.Explainer(model, composite="epsilon", epsilon=0.0)
    x = randn((2, 4), 3)
    weights = np.array([0.0, 1.0, 0.0], np.float32)
    res = exp.explain(x, target=weights)
    assert exp.compile((4,), weights=True).target_name == "target_weights_1"
    np.testing.assert_allclose(res.relevance.sum(axis=1), res.output[:, 1], rtol=1e-5)
