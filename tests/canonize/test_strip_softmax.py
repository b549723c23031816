"""strip_softmax: a trailing Softmax/LogSoftmax is removed and the logits become the output."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from canon_helpers import make_model, op_counts, randn, run, vi
from onnx_lrp.canonize import strip_softmax


def _model(op: str, axis: int):
    r = np.random.default_rng(4)
    return make_model(
        [helper.make_node("Gemm", ["x", "w", "b"], ["logits"], name="fc", transB=1),
         helper.make_node(op, ["logits"], ["prob"], name="head", axis=axis)],
        [vi("x", ["N", 6])], [vi("prob", ["N", 4])],
        {"w": r.standard_normal((4, 6)).astype(np.float32), "b": r.standard_normal(4).astype(np.float32)})


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("axis", [-1, 1])
def test_trailing_softmax_is_stripped(op, axis):
    model = _model(op, axis)
    x = randn((3, 6))
    stripped, output, kind = strip_softmax(model, "prob")
    assert kind == op
    assert output == "logits"
    assert op_counts(stripped) == {"Gemm": 1}
    assert [o.name for o in stripped.graph.output] == ["logits"]
    onnx.checker.check_model(stripped)
    logits = run(stripped, {"x": x})["logits"]
    probs = run(model, {"x": x})["prob"]
    # the stripped model's output is what the head was applied to
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    if op == "LogSoftmax":
        expected = np.log(expected)
    np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)
    assert np.abs(logits - probs).max() > 1e-2, "the output must have changed from probabilities to logits"


def test_input_model_is_not_modified():
    model = _model("Softmax", -1)
    before = model.SerializeToString()
    strip_softmax(model, "prob")
    assert model.SerializeToString() == before


def test_model_without_softmax_is_unchanged():
    model = make_model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [vi("x", [2, 3])],
                       [vi("y", [2, 3])])
    out, output, kind = strip_softmax(model, "y")
    assert kind is None and output == "y"
    assert op_counts(out) == {"Relu": 1}


def test_softmax_not_at_the_output_is_kept():
    """Attention-style softmax inside the network is part of the model, not its head."""
    model = make_model(
        [helper.make_node("Softmax", ["x"], ["a"], name="attn", axis=-1),
         helper.make_node("Mul", ["a", "x"], ["y"], name="mul")],
        [vi("x", [2, 3])], [vi("y", [2, 3])])
    out, output, kind = strip_softmax(model, "y")
    assert kind is None and output == "y"
    assert op_counts(out) == {"Softmax": 1, "Mul": 1}


def test_logits_that_are_already_an_output_are_not_duplicated():
    model = make_model(
        [helper.make_node("Relu", ["x"], ["logits"], name="relu"),
         helper.make_node("Softmax", ["logits"], ["prob"], name="head", axis=-1)],
        [vi("x", [2, 3])], [vi("logits", [2, 3]), vi("prob", [2, 3])])
    out, output, kind = strip_softmax(model, "prob")
    assert kind == "Softmax" and output == "logits"
    assert [o.name for o in out.graph.output] == ["logits"]
    assert op_counts(out) == {"Relu": 1}
    x = randn((2, 3))
    np.testing.assert_array_equal(run(out, {"x": x})["logits"], np.maximum(x, 0))
