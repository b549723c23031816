"""fuse_dense_bias: Add(MatMul(x, W), b) on a rank > 2 x becomes one Gemm over the rows of x."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import onnx_lrp
from canon_helpers import assert_same_outputs, make_model, op_counts, randn, vi
from onnx_lrp.canonize import _ranks as ranks_of
from onnx_lrp.canonize import fuse_dense_bias
from onnx_lrp.rules import Epsilon


def _linear_on(shape, bias_shape=(6,), bias_first=False):
    inits = {"w": randn((shape[-1], 6), 1), "b": randn(bias_shape, 2)}
    add_in = ["b", "m"] if bias_first else ["m", "b"]
    model = make_model(
        [helper.make_node("MatMul", ["x", "w"], ["m"], name="matmul"),
         helper.make_node("Add", add_in, ["y"], name="add")],
        [vi("x", ["N", *shape])], [vi("y", ["N", *shape[:-1], 6])], inits)
    return model


@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 5)])
@pytest.mark.parametrize("bias_shape,bias_first", [((6,), False), ((1, 1, 6), True), ((1,), False)])
def test_rank_above_two_becomes_a_gemm(shape, bias_shape, bias_first):
    model = _linear_on(shape, bias_shape, bias_first)
    fused = fuse_dense_bias(model, ranks_of(model))
    counts = op_counts(fused)
    assert counts["Gemm"] == 1 and counts["MatMul"] == 0 and counts["Add"] == 0, counts
    for batch in (1, 3):
        assert_same_outputs(model, fused, {"x": randn((batch, *shape), 3)})


def test_two_dimensional_input_is_left_to_fuse_bias():
    model = _linear_on((5,))
    assert op_counts(fuse_dense_bias(model, ranks_of(model)))["MatMul"] == 1


def test_the_dense_rule_sees_the_bias():
    """Epsilon on the fused layer: the bias absorbs its share, sum R_in = sum R·(z - b)/z."""
    model = _linear_on((4, 5))
    x = randn((2, 4, 5), 4)
    composite = onnx_lrp.composites.Composite(layer_map={"dense": Epsilon(0.0)})
    result = onnx_lrp.Explainer(model, composite=composite).explain(x, target=7)
    flat = result.output.reshape(2, -1)
    w, b = randn((5, 6), 1).astype(np.float64), randn((6,), 2).astype(np.float64)
    z = x.astype(np.float64).reshape(2, -1, 5) @ w + b   # (2, 4, 6); target 7 = row 1, column 1
    expected = flat[:, 7] * (z[:, 1, 1] - b[1]) / z[:, 1, 1]
    np.testing.assert_allclose(result.relevance.reshape(2, -1).sum(1), expected, rtol=1e-4)
