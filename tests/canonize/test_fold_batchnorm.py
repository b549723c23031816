"""fold_batchnorm: an inference BatchNormalization is folded into the Conv/ConvTranspose/Gemm before it."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from canon_helpers import (assert_same_outputs, bn_node, bn_params, init_names, make_model, op_counts, randn,
                           run, vi)
from onnx_lrp.canonize import fold_batchnorm


def _conv_bn(spatial: int, c_in: int, c_out: int, group: int = 1, bias: bool = True, op: str = "Conv",
             tail: bool = True):
    """x -> op -> BN -> Relu (tail) ; weights random, BN stats non-trivial."""
    k = (3,) * spatial
    w_shape = (c_out, c_in // group) + k if op == "Conv" else (c_in, c_out // group) + k
    inits = {"w": randn(w_shape, 11), **bn_params("bn", c_out)}
    ins = ["x", "w"]
    if bias:
        inits["b"] = randn((c_out,), 12)
        ins.append("b")
    size = 7
    out_size = size if op == "Conv" else size + 2  # pads 1 for Conv; stride 1 ConvTranspose grows by k-1
    attrs = dict(group=group)
    if op == "Conv":
        attrs["pads"] = [1] * (2 * spatial)
    nodes = [helper.make_node(op, ins, ["z"], name="lin", **attrs), bn_node("bn", "z", "bn_out")]
    out = "bn_out"
    if tail:
        nodes.append(helper.make_node("Relu", ["bn_out"], ["y"], name="relu"))
        out = "y"
    model = make_model(nodes, [vi("x", ["N", c_in] + [size] * spatial)],
                       [vi(out, ["N", c_out] + [out_size] * spatial)], inits)
    return model, {"x": randn((2, c_in) + (size,) * spatial, 13)}


def _assert_folded(model, folded, feeds, linear_op):
    counts = op_counts(folded)
    assert counts["BatchNormalization"] == 0, "BN must be folded"
    assert counts[linear_op] == 1
    lin = next(n for n in folded.graph.node if n.op_type == linear_op)
    assert len(lin.input) == 3 and lin.input[2], "the folded op needs a bias"
    assert not any(name.startswith("bn_") for name in init_names(folded)), \
        f"BN parameters must not linger as unused initializers: {sorted(init_names(folded))}"
    assert "w" not in init_names(folded), "the unscaled weight is unused after folding"
    assert_same_outputs(model, folded, feeds)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("spatial", [1, 2])
def test_conv(spatial, bias):
    model, feeds = _conv_bn(spatial, 3, 4, bias=bias)
    _assert_folded(model, fold_batchnorm(model), feeds, "Conv")


@pytest.mark.parametrize("group, c_in, c_out", [(2, 4, 6), (4, 4, 4), (3, 3, 6)])
def test_grouped_and_depthwise_conv(group, c_in, c_out):
    model, feeds = _conv_bn(2, c_in, c_out, group=group)
    _assert_folded(model, fold_batchnorm(model), feeds, "Conv")


@pytest.mark.parametrize("group, c_in, c_out, spatial", [(1, 3, 4, 2), (2, 4, 6, 2), (2, 4, 2, 1), (4, 4, 4, 2)])
def test_conv_transpose(group, c_in, c_out, spatial):
    model, feeds = _conv_bn(spatial, c_in, c_out, group=group, op="ConvTranspose", bias=group != 2)
    _assert_folded(model, fold_batchnorm(model), feeds, "ConvTranspose")


def _gemm_bn(trans_b: int, alpha: float, beta: float, c: str | None, out_is_graph_output=False):
    k, n = 5, 4
    inits = {"w": randn((n, k) if trans_b else (k, n), 21), **bn_params("bn", n, 22)}
    ins = ["x", "w"]
    if c == "vector":
        inits["c"] = randn((n,), 23)
    elif c == "row":
        inits["c"] = randn((1, n), 23)
    elif c == "scalar":
        inits["c"] = np.array(0.7, np.float32)
    if c:
        ins.append("c")
    nodes = [helper.make_node("Gemm", ins, ["z"], name="fc", transB=trans_b, alpha=alpha, beta=beta),
             bn_node("bn", "z", "bn_out", epsilon=1e-5)]
    if out_is_graph_output:
        outputs = [vi("bn_out", ["N", n])]
    else:
        nodes.append(helper.make_node("Relu", ["bn_out"], ["y"], name="relu"))
        outputs = [vi("y", ["N", n])]
    model = make_model(nodes, [vi("x", ["N", k])], outputs, inits)
    return model, {"x": randn((3, k), 24)}


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("alpha, beta, c", [(1.0, 1.0, "vector"), (0.5, 2.0, "vector"), (1.5, -0.5, "row"),
                                            (1.0, 3.0, "scalar"), (0.7, 1.0, None), (1.0, 0.25, None)])
def test_gemm(trans_b, alpha, beta, c):
    model, feeds = _gemm_bn(trans_b, alpha, beta, c)
    _assert_folded(model, fold_batchnorm(model), feeds, "Gemm")


def test_bn_output_that_is_a_graph_output_keeps_its_name():
    """A network ending in Linear + BatchNorm1d: the folded Gemm must write the graph output."""
    model, feeds = _gemm_bn(1, 1.0, 1.0, "vector", out_is_graph_output=True)
    folded = fold_batchnorm(model)
    _assert_folded(model, folded, feeds, "Gemm")
    assert [o.name for o in folded.graph.output] == ["bn_out"]


def test_conv_bn_at_the_graph_output():
    model, feeds = _conv_bn(2, 3, 4, tail=False)
    folded = fold_batchnorm(model)
    _assert_folded(model, folded, feeds, "Conv")
    assert [o.name for o in folded.graph.output] == ["bn_out"]


def test_not_folded_when_conv_output_has_another_consumer():
    model, feeds = _conv_bn(2, 3, 4)
    nodes = list(model.graph.node) + [helper.make_node("Add", ["y", "z"], ["y2"], name="skip")]
    model2 = make_model(nodes, list(model.graph.input), [vi("y2", ["N", 4, 7, 7])],
                        {t.name: _arr(t) for t in model.graph.initializer})
    folded = fold_batchnorm(model2)
    assert op_counts(folded) == op_counts(model2)
    assert_same_outputs(model2, folded, feeds)


def test_not_folded_when_conv_output_is_a_graph_output():
    model, feeds = _conv_bn(2, 3, 4)
    model.graph.output.append(vi("z", ["N", 4, 7, 7]))
    folded = fold_batchnorm(model)
    assert op_counts(folded) == op_counts(model)
    assert_same_outputs(model, folded, feeds)


def test_not_folded_after_concat():
    c = 3
    inits = {"w1": randn((2, c, 3, 3), 31), "w2": randn((2, c, 3, 3), 32), **bn_params("bn", 4)}
    model = make_model(
        [helper.make_node("Conv", ["x", "w1"], ["a"], name="c1", pads=[1, 1, 1, 1]),
         helper.make_node("Conv", ["x", "w2"], ["b"], name="c2", pads=[1, 1, 1, 1]),
         helper.make_node("Concat", ["a", "b"], ["cat"], name="cat", axis=1),
         bn_node("bn", "cat", "y")],
        [vi("x", ["N", c, 5, 5])], [vi("y", ["N", 4, 5, 5])], inits)
    folded = fold_batchnorm(model)
    assert op_counts(folded) == op_counts(model)
    assert_same_outputs(model, folded, {"x": randn((2, c, 5, 5))})


def test_not_folded_in_training_mode():
    """training_mode=1 normalises with the batch statistics; that is not a fixed affine map."""
    model, feeds = _conv_bn(2, 3, 4, tail=False)
    bn = next(n for n in model.graph.node if n.op_type == "BatchNormalization")
    bn.attribute.append(helper.make_attribute("training_mode", 1))
    folded = fold_batchnorm(model)
    assert op_counts(folded)["BatchNormalization"] == 1


def test_not_folded_when_gemm_c_is_per_sample():
    """A (M, N) C is not a per-channel bias; the pass must leave it alone, not crash."""
    k, n, m = 5, 4, 3
    inits = {"w": randn((k, n), 41), "c": randn((m, n), 42), **bn_params("bn", n)}
    model = make_model(
        [helper.make_node("Gemm", ["x", "w", "c"], ["z"], name="fc"), bn_node("bn", "z", "y")],
        [vi("x", [m, k])], [vi("y", [m, n])], inits)
    folded = fold_batchnorm(model)
    assert op_counts(folded)["BatchNormalization"] == 1
    assert_same_outputs(model, folded, {"x": randn((m, k))})


def test_two_conv_bn_blocks_sharing_a_weight():
    """Each block gets its own folded weight; the shared original must stay intact for neither."""
    inits = {"w": randn((3, 3, 3, 3), 51), **bn_params("bn1", 3, 52), **bn_params("bn2", 3, 53)}
    model = make_model(
        [helper.make_node("Conv", ["x", "w"], ["z1"], name="c1", pads=[1, 1, 1, 1]),
         bn_node("bn1", "z1", "h"),
         helper.make_node("Conv", ["h", "w"], ["z2"], name="c2", pads=[1, 1, 1, 1]),
         bn_node("bn2", "z2", "y")],
        [vi("x", ["N", 3, 5, 5])], [vi("y", ["N", 3, 5, 5])], inits)
    folded = fold_batchnorm(model)
    assert op_counts(folded) == {"Conv": 2}
    c1, c2 = folded.graph.node
    assert c1.input[1] != c2.input[1]
    assert_same_outputs(model, folded, {"x": randn((2, 3, 5, 5))})


def test_input_model_is_not_modified():
    model, feeds = _conv_bn(2, 3, 4)
    before = model.SerializeToString()
    fold_batchnorm(model)
    assert model.SerializeToString() == before
    run(model, feeds)


def _arr(t):
    from onnx import numpy_helper
    return numpy_helper.to_array(t)
