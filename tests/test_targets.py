"""Any output, any target: flat and tuple indices, weights over the output, squashers stripped."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

import onnx_lrp
from family_helpers import lrp0_composite
from model_builders import make_model, randn, run, vi


def _dense_map() -> onnx.ModelProto:
    """A segmentation-like model: x (N,2,4,4) -> 1×1 Conv to 3 classes -> (N,3,4,4) scores."""
    w = np.random.default_rng(7).standard_normal((3, 2, 1, 1)).astype(np.float32)
    return make_model([helper.make_node("Conv", ["x", "w"], ["y"])], [vi("x", ["N", 2, 4, 4])],
                      [vi("y", ["N", 3, 4, 4])], {"w": w})


def _sequence(squash: str | None = None) -> onnx.ModelProto:
    """x (N,T=5,4) -> MatMul (4,3) -> (N,5,3) per-step scores [-> squasher over the classes]."""
    w = np.random.default_rng(8).standard_normal((4, 3)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["scores" if squash else "y"])]
    if squash == "sigmoid":
        nodes.append(helper.make_node("Sigmoid", ["scores"], ["y"]))
    elif squash == "softmax_moved":  # softmax over the classes, then data movement to the output
        nodes += [helper.make_node("Softmax", ["scores"], ["p"], axis=-1),
                  helper.make_node("Transpose", ["p"], ["y"], perm=[0, 2, 1])]
    elif squash == "written":  # softmax spelled out as exp(x - max) / sum, as some exporters do
        nodes += [helper.make_node("ReduceMax", ["scores"], ["m"], axes=[-1], keepdims=1),
                  helper.make_node("Sub", ["scores", "m"], ["shifted"]),
                  helper.make_node("Exp", ["shifted"], ["e"]),
                  helper.make_node("ReduceSum", ["e", "last"], ["total"], keepdims=1),
                  helper.make_node("Div", ["e", "total"], ["y"])]
    shape = ["N", 3, 5] if squash == "softmax_moved" else ["N", 5, 3]
    return make_model(nodes, [vi("x", ["N", 5, 4])], [vi("y", shape)], {"w": w, "last": np.array([-1])})


def test_mask_over_a_dense_output():
    """Weights shaped like one sample's output: relevance explains Σ mask ⊙ scores."""
    model = _dense_map()
    x = randn((2, 2, 4, 4), 1)
    mask = np.zeros((3, 4, 4), np.float32)
    mask[1, 1:3, 1:3] = 1.0  # class 1 over a 2×2 region
    res = onnx_lrp.Explainer(model, composite=lrp0_composite()).explain(x, target=mask)
    w = onnx.numpy_helper.to_array(model.graph.initializer[0])[:, :, 0, 0]
    expected = np.zeros_like(x)
    expected[:, :, 1:3, 1:3] = x[:, :, 1:3, 1:3] * w[1][None, :, None, None]  # LRP-0 of a 1×1 conv
    np.testing.assert_allclose(res.relevance, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.conservation(), 1.0, rtol=1e-5)
    assert (res.target == -1).all() and res.weights.shape == (2, 3, 4, 4)


def test_weights_per_sample_and_bad_shapes():
    model = _dense_map()
    x = randn((2, 2, 4, 4), 2)
    weights = randn((2, 3, 4, 4), 3)
    res = onnx_lrp.Explainer(model, composite=lrp0_composite()).explain(x, target=weights)
    np.testing.assert_allclose(res.target_output, (weights * res.output).reshape(2, -1).sum(1), rtol=1e-5)
    np.testing.assert_allclose(res.conservation(), 1.0, rtol=1e-4)
    with pytest.raises(onnx_lrp.InvalidTarget, match=r"\(3, 4, 4\).*shape \(3, 4\)"):
        onnx_lrp.Explainer(model).explain(x, target=randn((3, 4), 4))


def test_time_step_and_class_tuple_on_a_sequence_output():
    model = _sequence()
    x = randn((2, 5, 4), 5)
    exp = onnx_lrp.Explainer(model, composite=lrp0_composite())
    res = exp.explain(x, target=(3, 2))
    w = onnx.numpy_helper.to_array(model.graph.initializer[0])
    expected = np.zeros_like(x)
    expected[:, 3] = x[:, 3] * w[:, 2]
    np.testing.assert_allclose(res.relevance, expected, rtol=1e-5, atol=1e-6)
    assert (res.target == 3 * 3 + 2).all()
    flat = exp.explain(x, target=3 * 3 + 2)  # the same as a flat index
    np.testing.assert_array_equal(flat.relevance, res.relevance)
    per_sample = exp.explain(x, target=(np.array([0, 4]), -1))
    assert list(per_sample.target) == [2, 14]
    with pytest.raises(onnx_lrp.InvalidTarget, match="one index per axis"):
        exp.explain(x, target=(1, 2, 0))
    with pytest.raises(onnx_lrp.InvalidTarget, match="out of range"):
        exp.explain(x, target=(5, 0))


@pytest.mark.parametrize("squash", ["sigmoid", "softmax_moved", "written"])
def test_trailing_squasher_is_stripped(squash):
    """The scores are explained: same relevance as the model without the squasher."""
    x = randn((2, 5, 4), 6)
    exp = onnx_lrp.Explainer(_sequence(squash), composite=lrp0_composite())
    assert exp.notes and ("Sigmoid" in exp.notes[0] or "oftmax" in exp.notes[0])
    target = (1, 3) if squash == "softmax_moved" else (3, 1)  # the moved output is (N, classes, T)
    res = exp.explain(x, target=target)
    plain = onnx_lrp.Explainer(_sequence(), composite=lrp0_composite()).explain(x, target=(3, 1))
    np.testing.assert_allclose(res.relevance, plain.relevance, rtol=1e-6, atol=1e-7)
    scores = run(_sequence(), {"x": x})["y"]
    expected = scores.transpose(0, 2, 1) if squash == "softmax_moved" else scores
    np.testing.assert_allclose(res.output, expected, rtol=1e-5, atol=1e-6)


def test_model_without_batch_axis():
    """x (T, F), axis 0 is time: a mean over time, then a dense head. With batch_axis=None the
    whole input is one sample (axis 0 must not be split or treated as the batch)."""
    w = np.random.default_rng(9).standard_normal((4, 3)).astype(np.float32)
    model = make_model([helper.make_node("ReduceMean", ["x"], ["m"], axes=[0], keepdims=0),
                        helper.make_node("MatMul", ["m", "w"], ["y"])],
                       [vi("x", ["T", 4])], [vi("y", [3])], {"w": w})
    x = randn((6, 4), 10)
    exp = onnx_lrp.Explainer(model, composite=lrp0_composite(), batch_axis=None)
    res = exp.explain(x, target=2)
    assert res.relevance.shape == (1, 6, 4) and res.output.shape == (1, 3)
    np.testing.assert_allclose(res.relevance[0], x / 6 * w[:, 2], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.conservation(), 1.0, rtol=1e-5)


def test_output_name_may_be_an_inner_tensor():
    """The logits before a squasher, named directly (not a graph output)."""
    model = _sequence("sigmoid")
    x = randn((2, 5, 4), 11)
    res = onnx_lrp.Explainer(model, output_name="scores", composite=lrp0_composite()).explain(x, target=(0, 0))
    np.testing.assert_allclose(res.output, run(_sequence(), {"x": x})["y"], rtol=1e-5, atol=1e-6)
    with pytest.raises(onnx_lrp.InvalidInput, match="no output or tensor 'nope'"):
        onnx_lrp.Explainer(model, output_name="nope")
