"""Attention ops: MatMul and Einsum of two activations, Softmax inside the graph.
Forward and VJP against onnxruntime and float64 finite differences (tests/ops/harness.py)."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx_lrp.errors import UnsupportedOp
from onnx_lrp.ops.attention import BilinearEinsumHandler, BilinearMatMulHandler, SoftmaxHandler

from .harness import Case, check_op, node_model

RNG = np.random.default_rng(11)


def _two_activations(sample):
    """``p = x·c`` and ``q = xᵀ`` (last two axes swapped): two activations from one input."""
    rank = len(sample) + 1
    scale = RNG.uniform(0.5, 1.5, sample).astype(np.float32)
    perm = list(range(rank - 2)) + [rank - 1, rank - 2]
    return [("Mul", ["x", scale], "p", {}), ("Transpose", ["x"], "q", {"perm": perm})]


@pytest.mark.parametrize("sample", [(2, 3, 4), (5, 3)])
def test_matmul_of_two_activations(sample):
    """Q Kᵀ with 4-D heads (N, heads, tokens, d) and 3-D (N, tokens, d)."""
    model = node_model("MatMul", sample, ["p", "q"], prefix=_two_activations(sample))
    checked = check_op(model, sample)
    assert isinstance(checked.case.handler, BilinearMatMulHandler)
    assert checked.case.handler.category_of(checked.case.node, checked.case.g) == "bilinear"


def test_matmul_of_two_activations_broadcasts_one_operand():
    """(N, h, t, d) @ (N, 1, d, t): the VJP sums over the broadcast heads axis."""
    sample = (2, 3, 4)
    prefix = [("Mul", ["x", RNG.uniform(0.5, 1.5, sample).astype(np.float32)], "p", {}),
              ("ReduceSum", ["x", np.array([1], np.int64)], "s", {"keepdims": 1}),
              ("Transpose", ["s"], "q", {"perm": [0, 1, 3, 2]})]
    check_op(node_model("MatMul", sample, ["p", "q"], prefix=prefix), sample)


def test_matmul_of_two_activations_of_rank_two_is_refused():
    prefix = [("Mul", ["x", np.float32(2.0)], "p", {}), ("Transpose", ["x"], "q", {"perm": [1, 0]})]
    model = node_model("MatMul", (3,), ["p", "q"], prefix=prefix)
    with pytest.raises(UnsupportedOp, match="batch axis"):
        Case(model, (3,))


@pytest.mark.parametrize("equation", ["bhid,bhjd->bhij", "bhij,bhjd->bhid", "...id,...jd->...ij"])
def test_einsum_of_two_activations(equation):
    sample = (2, 3, 3)
    prefix = [("Mul", ["x", RNG.uniform(0.5, 1.5, sample).astype(np.float32)], "p", {}),
              ("Transpose", ["x"], "q", {"perm": [0, 1, 3, 2]})]
    checked = check_op(node_model("Einsum", sample, ["p", "q"], prefix=prefix, opset=17, equation=equation), sample)
    assert isinstance(checked.case.handler, BilinearEinsumHandler)


@pytest.mark.parametrize("equation,why", [("bii,bij->bij", "repeated"), ("bij,bjk", "explicit output"),
                                          ("bij,bjk->ibk", "first index")])
def test_einsum_forms_that_are_refused(equation, why):
    prefix = [("Mul", ["x", np.float32(2.0)], "p", {}), ("Transpose", ["x"], "q", {"perm": [0, 2, 1]})]
    model = node_model("Einsum", (3, 3), ["p", "q"], prefix=prefix, equation=equation) if "->" in equation else None
    if model is None:
        model = node_model("Einsum", (3, 3), ["p", "q"], prefix=prefix, equation="bij,bjk->bik")
        model.graph.node[-1].attribute[0].s = equation.encode()
    with pytest.raises(UnsupportedOp, match=why):
        Case(model, (3, 3))


@pytest.mark.parametrize("sample,axis", [((2, 3, 4), -1), ((2, 3, 4), 2), ((5,), 1)])
def test_softmax_inside_the_graph(sample, axis):
    """A Softmax followed by another op (a trailing one is stripped by canonization)."""
    model = _inside(node_model("Softmax", sample, ["x"], axis=axis))
    checked = check_op(model, sample, x=RNG.standard_normal((3, *sample)).astype(np.float32) * 2)
    assert isinstance(checked.case.handler, SoftmaxHandler)


def _inside(model):
    """The model explains ``2·softmax(x)`` and also outputs the softmax (what the harness checks)."""
    model.graph.node.append(helper.make_node("Mul", ["y0", "two"], ["z"], name="after"))
    model.graph.initializer.append(numpy_helper.from_array(np.array(2.0, np.float32), "two"))
    dims = [d.dim_param or d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    model.graph.output.insert(0, helper.make_tensor_value_info("z", TensorProto.FLOAT, dims))
    return model


def test_softmax_over_the_batch_is_refused():
    model = _inside(node_model("Softmax", (4,), ["x"], axis=0))
    with pytest.raises(UnsupportedOp, match="batch"):
        Case(model, (4,))
