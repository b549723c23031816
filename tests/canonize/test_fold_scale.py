"""fold_scale / fold_linear_affine: a BatchNormalization written out as Mul(scale) then Add(shift)
after a linear op becomes that op's weight and bias."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from canon_helpers import assert_same_outputs, make_model, op_counts, randn, vi
from onnx_lrp.canonize import _ranks as ranks_of
from onnx_lrp.canonize import fold_linear_affine, fold_scale


def _conv_then(ops, bias=True, group=1):
    """x -> Conv(3 -> 4) -> each (op, constant shape) in ``ops`` -> y.

    Weights are scaled so that outputs are O(1): folding reassociates float32 products
    ((s·W)·x + s·b + t instead of s·(W·x + b) + t), which moves results by a few float32 ulps
    of the terms, and the helpers compare with an absolute tolerance of 1e-6."""
    cin = 3 if group == 1 else 4
    inits = {"w": randn((4, cin // group, 3, 3), 1) * np.float32(0.2)}
    ins = ["x", "w"] + (["b"] if bias else [])
    if bias:
        inits["b"] = randn((4,), 2)
    nodes = [helper.make_node("Conv", ins, ["t0"], name="conv", pads=[1, 1, 1, 1], group=group)]
    for i, (op, shape) in enumerate(ops):
        inits[f"k{i}"] = np.abs(randn(shape, 10 + i)) + 0.5 if op == "Div" else randn(shape, 10 + i)
        out = "y" if i == len(ops) - 1 else f"t{i + 1}"
        nodes.append(helper.make_node(op, [f"t{i}", f"k{i}"], [out], name=f"{op.lower()}{i}"))
    model = make_model(nodes, [vi("x", ["N", cin, 5, 5])], [vi("y", ["N", 4, 5, 5])], inits)
    return model, {"x": randn((2, cin, 5, 5), 3)}


@pytest.mark.parametrize("shape", [(1, 4, 1, 1), (4, 1, 1), (), (1,)])
@pytest.mark.parametrize("bias", [False, True])
def test_decomposed_batchnorm_after_conv_folds(shape, bias):
    model, feeds = _conv_then([("Mul", shape), ("Add", shape)], bias=bias)
    folded = fold_linear_affine(model, ranks_of(model))
    assert op_counts(folded) == {"Conv": 1}, op_counts(folded)
    assert folded.graph.node[0].output[0] == "y"
    assert_same_outputs(model, folded, feeds)


@pytest.mark.parametrize("ops", [[("Div", (4, 1, 1)), ("Sub", (1, 4, 1, 1))],
                                 [("Sub", (4, 1, 1)), ("Mul", (4, 1, 1)), ("Add", (4, 1, 1))],
                                 [("Mul", ()), ("Mul", (4, 1, 1)), ("Add", ())]])
def test_chains_of_scales_and_shifts_fold(ops):
    model, feeds = _conv_then(ops)
    folded = fold_linear_affine(model, ranks_of(model))
    assert op_counts(folded) == {"Conv": 1}, op_counts(folded)
    assert_same_outputs(model, folded, feeds)


def test_depthwise_conv_scale_folds():
    model, feeds = _conv_then([("Mul", (4, 1, 1))], group=4)
    folded = fold_scale(model)
    assert op_counts(folded) == {"Conv": 1}
    assert_same_outputs(model, folded, feeds)


@pytest.mark.parametrize("shape", [(1, 1, 5, 5), (5,), (4, 5, 1)])
def test_constants_that_vary_off_the_channel_axis_stay(shape):
    model, feeds = _conv_then([("Mul", shape)])
    folded = fold_scale(model)
    assert op_counts(folded) == {"Conv": 1, "Mul": 1}
    assert_same_outputs(model, folded, feeds)


def test_shared_conv_output_is_not_folded():
    inits = {"w": randn((4, 3, 3, 3), 1), "k": randn((4, 1, 1), 2)}
    model = make_model(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
         helper.make_node("Mul", ["c", "k"], ["m"], name="mul"),
         helper.make_node("Add", ["c", "m"], ["y"], name="add")],
        [vi("x", ["N", 3, 5, 5])], [vi("y", ["N", 4, 5, 5])], inits)
    folded = fold_scale(model)
    assert op_counts(folded)["Mul"] == 1, "the Conv output is read twice: scaling it would change the Add"


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_and_matmul_scales_fold(trans_b):
    w = randn((6, 5), 4) if trans_b else randn((5, 6), 4)
    inits = {"w": w, "b": randn((6,), 5), "s": randn((6,), 6), "t": randn((1, 6), 7), "w2": randn((6, 3), 8),
             "s2": randn((3,), 9), "t2": randn((3,), 10)}
    model = make_model(
        [helper.make_node("Gemm", ["x", "w", "b"], ["g"], name="gemm", transB=trans_b, alpha=0.5, beta=2.0),
         helper.make_node("Mul", ["s", "g"], ["gs"], name="mul"),
         helper.make_node("Add", ["gs", "t"], ["h"], name="add"),
         helper.make_node("MatMul", ["h", "w2"], ["m"], name="matmul"),
         helper.make_node("Mul", ["m", "s2"], ["ms"], name="mul2"),
         helper.make_node("Add", ["ms", "t2"], ["y"], name="add2")],
        [vi("x", ["N", 5])], [vi("y", ["N", 3])], inits)
    folded = fold_linear_affine(model, ranks_of(model))
    assert op_counts(folded) == {"Gemm": 2}, op_counts(folded)
    assert_same_outputs(model, folded, {"x": randn((4, 5), 11)})


def test_division_by_a_constant_below_the_linear_op_is_kept():
    inits = {"w": randn((4, 3, 3, 3), 1), "k": np.full((4, 1, 1), 2.0, np.float32)}
    model = make_model(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
         helper.make_node("Div", ["k", "c"], ["y"], name="div")],
        [vi("x", ["N", 3, 5, 5])], [vi("y", ["N", 4, 5, 5])], inits)
    assert op_counts(fold_scale(model))["Div"] == 1, "k / conv(x) is not a scale of the conv"
