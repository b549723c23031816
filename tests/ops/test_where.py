"""Where: forward and VJP against finite differences (tests/ops/harness.py), and what LRP does
with it (relevance goes where each value came from; a constant fill absorbs its share)."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnx_lrp
from onnx_lrp.ops.where import WhereHandler

from .harness import check_op, node_model

RNG = np.random.default_rng(5)


@pytest.mark.parametrize("order", ["x_first", "x_second"])
def test_where_with_a_constant_fill(order):
    """``masked_fill``: Where(mask, x, fill) and Where(mask, fill, x), the mask broadcast over the batch."""
    sample = (3, 4)
    mask = RNG.random(sample) < 0.6
    fill = np.float32(-2.5)
    inputs = [mask, "x", fill] if order == "x_first" else [mask, fill, "x"]
    checked = check_op(node_model("Where", sample, inputs), sample)
    assert isinstance(checked.case.handler, WhereHandler)


def test_where_of_two_branches_with_a_broadcast_operand():
    """Where(cond, x·c, sum over the last axis kept): both operands carry relevance, one broadcast."""
    sample = (2, 5)
    prefix = [("Mul", ["x", RNG.uniform(0.5, 1.5, sample).astype(np.float32)], "p", {}),
              ("ReduceSum", ["x", np.array([-1], np.int64)], "s", {"keepdims": 1})]
    check_op(node_model("Where", sample, [RNG.random(sample) < 0.5, "p", "s"], prefix=prefix), sample)


def test_where_with_a_condition_computed_from_the_data():
    """Where(x > 0, x, 0.1·x): the condition is taken as it is at run time (a leaky ReLU)."""
    sample = (6,)
    prefix = [("Greater", ["x", np.float32(0.0)], "c", {}), ("Mul", ["x", np.float32(0.1)], "l", {})]
    check_op(node_model("Where", sample, ["c", "x", "l"], prefix=prefix), sample)


def _masked_dense(fill: float):
    """x (N, 4) -> Where(mask, x, fill) -> MatMul(W): LRP-0 gives the masked inputs nothing."""
    mask = np.array([True, False, True, True])
    nodes = [helper.make_node("Where", ["mask", "x", "fill"], ["m"], name="where"),
             helper.make_node("MatMul", ["m", "w"], ["y"], name="dense")]
    w = RNG.standard_normal((4, 3)).astype(np.float32)
    inits = [numpy_helper.from_array(mask, "mask"), numpy_helper.from_array(np.float32(fill), "fill"),
             numpy_helper.from_array(w, "w")]
    graph = helper.make_graph(nodes, "where", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model, mask, w


def test_lrp0_routes_relevance_to_the_values_taken():
    model, mask, w = _masked_dense(fill=0.0)
    x = RNG.standard_normal((2, 4)).astype(np.float32)
    res = onnx_lrp.Explainer(model, composite=onnx_lrp.composites.EpsilonComposite(epsilon=0.0)).explain(x, target=1)
    m = np.where(mask, x, 0.0).astype(np.float64)
    y = m @ w.astype(np.float64)
    want = m * w[:, 1] * (y[:, 1:2] / y[:, 1:2])  # LRP-0 on the dense layer, routed through Where
    np.testing.assert_allclose(res.relevance, want, rtol=1e-5, atol=1e-6)
    assert (res.relevance[:, ~mask] == 0).all()
    np.testing.assert_allclose(res.relevance.sum(axis=1), res.target_output, rtol=1e-5)


def test_a_nonzero_fill_absorbs_its_share_as_a_bias_does():
    model, mask, w = _masked_dense(fill=1.5)
    x = RNG.standard_normal((2, 4)).astype(np.float32)
    res = onnx_lrp.Explainer(model, composite=onnx_lrp.composites.EpsilonComposite(epsilon=0.0)).explain(x, target=1)
    m = np.where(mask, x, 1.5).astype(np.float64)
    y = m @ w.astype(np.float64)
    want = np.where(mask, m * w[:, 1] / y[:, 1:2] * y[:, 1:2], 0.0)
    np.testing.assert_allclose(res.relevance, want, rtol=1e-5, atol=1e-6)
