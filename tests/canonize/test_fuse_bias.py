"""fuse_bias: Add(linear(x), constant) becomes one linear op with a bias."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from canon_helpers import assert_same_outputs, init_names, make_model, op_counts, randn, vi
from onnx_lrp.canonize import fuse_bias
from onnx_lrp.canonize import _ranks as ranks_of


def _conv_add(const: np.ndarray, bias: bool = False, const_first: bool = False):
    inits = {"w": randn((4, 3, 3, 3), 61), "k": const}
    ins = ["x", "w"] + (["b"] if bias else [])
    if bias:
        inits["b"] = randn((4,), 62)
    add_in = ["k", "z"] if const_first else ["z", "k"]
    model = make_model(
        [helper.make_node("Conv", ins, ["z"], name="conv", pads=[1, 1, 1, 1]),
         helper.make_node("Add", add_in, ["y"], name="add")],
        [vi("x", ["N", 3, 5, 5])], [vi("y", ["N", 4, 5, 5])], inits)
    return model, {"x": randn((2, 3, 5, 5), 63)}


def _assert_fused(model, fused, feeds, linear_op):
    assert op_counts(fused)["Add"] == 0, "the Add must be fused"
    assert op_counts(fused)[linear_op] == 1 and len(fused.graph.node) == 1
    lin = fused.graph.node[0]
    assert len(lin.input) == 3 and lin.input[2] in init_names(fused)
    assert lin.output[0] == "y", "the fused op writes the Add's output"
    assert "k" not in init_names(fused), "the added constant is unused after fusing"
    assert_same_outputs(model, fused, feeds)


@pytest.mark.parametrize("shape", [(4, 1, 1), (1, 4, 1, 1), (), (1,), (1, 1, 1)])
@pytest.mark.parametrize("bias", [False, True])
def test_conv_plus_channel_constant(shape, bias):
    model, feeds = _conv_add(randn(shape, 64), bias=bias)
    _assert_fused(model, fuse_bias(model), feeds, "Conv")


def test_constant_on_the_left_of_the_add():
    model, feeds = _conv_add(randn((4, 1, 1), 65), const_first=True)
    _assert_fused(model, fuse_bias(model), feeds, "Conv")


@pytest.mark.parametrize("shape", [(1, 4, 5, 5), (4, 5, 5), (5,), (1, 1, 5, 1)])
def test_conv_plus_per_position_constant_is_not_fused(shape):
    model, feeds = _conv_add(randn(shape, 66))
    fused = fuse_bias(model)
    assert op_counts(fused) == {"Conv": 1, "Add": 1}
    assert_same_outputs(model, fused, feeds)


@pytest.mark.parametrize("group, c_in, c_out", [(1, 3, 4), (2, 4, 6)])
@pytest.mark.parametrize("shape_of", [lambda c: (c, 1, 1), lambda c: (1, c, 1, 1), lambda c: ()])
@pytest.mark.parametrize("bias", [False, True])
def test_conv_transpose_plus_channel_constant(group, c_in, c_out, shape_of, bias):
    inits = {"w": randn((c_in, c_out // group, 3, 3), 67), "k": randn(shape_of(c_out), 68)}
    ins = ["x", "w"] + (["b"] if bias else [])
    if bias:
        inits["b"] = randn((c_out,), 69)
    model = make_model(
        [helper.make_node("ConvTranspose", ins, ["z"], name="deconv", group=group, strides=[2, 2]),
         helper.make_node("Add", ["z", "k"], ["y"], name="add")],
        [vi("x", ["N", c_in, 4, 4])], [vi("y", ["N", c_out, 9, 9])], inits)
    _assert_fused(model, fuse_bias(model), {"x": randn((2, c_in, 4, 4), 70)}, "ConvTranspose")


def _gemm_add(const, c=None, trans_b=1, beta=1.0, alpha=1.0):
    k, n = 6, 4
    inits = {"w": randn((n, k) if trans_b else (k, n), 71), "k": const}
    ins = ["x", "w"]
    if c is not None:
        inits["c"] = c
        ins.append("c")
    model = make_model(
        [helper.make_node("Gemm", ins, ["z"], name="fc", transB=trans_b, beta=beta, alpha=alpha),
         helper.make_node("Add", ["z", "k"], ["y"], name="add")],
        [vi("x", ["N", k])], [vi("y", ["N", n])], inits)
    return model, {"x": randn((3, k), 72)}


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("const_shape", [(4,), (1, 4), ()])
def test_gemm_without_c(trans_b, const_shape):
    model, feeds = _gemm_add(randn(const_shape, 73), trans_b=trans_b, beta=0.5, alpha=2.0)
    _assert_fused(model, fuse_bias(model), feeds, "Gemm")


@pytest.mark.parametrize("c_shape, beta", [((4,), 1.0), ((4,), -1.5), ((1, 4), 2.0), ((), 0.5)])
def test_gemm_with_c(c_shape, beta):
    model, feeds = _gemm_add(randn((4,), 74), c=randn(c_shape, 75), beta=beta)
    fused = fuse_bias(model)
    _assert_fused(model, fused, feeds, "Gemm")
    assert "c" not in init_names(fused)


def test_gemm_with_per_sample_c_is_not_fused():
    k, n, m = 6, 4, 3
    model = make_model(
        [helper.make_node("Gemm", ["x", "w", "c"], ["z"], name="fc"),
         helper.make_node("Add", ["z", "k"], ["y"], name="add")],
        [vi("x", [m, k])], [vi("y", [m, n])], {"w": randn((k, n), 76), "c": randn((m, n), 77),
                                               "k": randn((n,), 78)})
    fused = fuse_bias(model)
    assert op_counts(fused) == {"Gemm": 1, "Add": 1}
    assert_same_outputs(model, fused, {"x": randn((m, k))})


def _matmul_add(x_shape, w_shape=(6, 4), const_shape=(4,)):
    x_dims = ["N"] + list(x_shape[1:])
    model = make_model(
        [helper.make_node("MatMul", ["x", "w"], ["z"], name="mm"),
         helper.make_node("Add", ["z", "k"], ["y"], name="add")],
        [vi("x", x_dims)], [vi("y", x_dims[:-1] + [w_shape[1]])],
        {"w": randn(w_shape, 81), "k": randn(const_shape, 82)})
    return model, {"x": randn(x_shape, 83)}


@pytest.mark.parametrize("const_shape", [(4,), (1, 4)])
def test_2d_matmul_plus_add_becomes_gemm(const_shape):
    model, feeds = _matmul_add((3, 6), const_shape=const_shape)
    fused = fuse_bias(model, ranks_of(model))
    _assert_fused(model, fused, feeds, "Gemm")
    assert op_counts(fused) == {"Gemm": 1}


def test_3d_matmul_is_not_fused():
    model, feeds = _matmul_add((2, 5, 6))
    fused = fuse_bias(model, ranks_of(model))
    assert op_counts(fused) == {"MatMul": 1, "Add": 1}
    assert_same_outputs(model, fused, feeds)


def test_matmul_of_unknown_rank_is_not_fused():
    model, feeds = _matmul_add((3, 6))
    fused = fuse_bias(model)  # no ranks given
    assert op_counts(fused) == {"MatMul": 1, "Add": 1}


def test_not_fused_when_linear_output_has_another_reader():
    model, feeds = _conv_add(randn((4, 1, 1), 91))
    nodes = list(model.graph.node) + [helper.make_node("Mul", ["y", "z"], ["y2"], name="mul")]
    from onnx import numpy_helper
    model2 = make_model(nodes, list(model.graph.input), [vi("y2", ["N", 4, 5, 5])],
                        {t.name: numpy_helper.to_array(t) for t in model.graph.initializer})
    fused = fuse_bias(model2)
    assert op_counts(fused) == op_counts(model2)
    assert_same_outputs(model2, fused, feeds)


def test_two_constant_adds_in_a_row_both_fuse():
    inits = {"w": randn((4, 3, 1, 1), 92), "k1": randn((4, 1, 1), 93), "k2": randn((1, 4, 1, 1), 94)}
    model = make_model(
        [helper.make_node("Conv", ["x", "w"], ["z"], name="conv"),
         helper.make_node("Add", ["z", "k1"], ["h"], name="add1"),
         helper.make_node("Add", ["k2", "h"], ["y"], name="add2")],
        [vi("x", ["N", 3, 5, 5])], [vi("y", ["N", 4, 5, 5])], inits)
    fused = fuse_bias(model)
    assert op_counts(fused) == {"Conv": 1}
    assert not {"k1", "k2"} & init_names(fused)
    assert_same_outputs(model, fused, {"x": randn((2, 3, 5, 5))})


def test_add_of_two_activations_is_left_alone():
    inits = {"w": randn((4, 3, 1, 1), 95)}
    model = make_model(
        [helper.make_node("Conv", ["x", "w"], ["z"], name="conv"),
         helper.make_node("Add", ["z", "x2"], ["y"], name="add"),
         ],
        [vi("x", ["N", 3, 5, 5]), vi("x2", ["N", 4, 5, 5])], [vi("y", ["N", 4, 5, 5])], inits)
    fused = fuse_bias(model)
    assert op_counts(fused) == {"Conv": 1, "Add": 1}
