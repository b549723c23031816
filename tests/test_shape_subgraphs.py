"""Shape subgraphs evaluated at compile time, the batch kept free (onnx_lrp/specialize.py)."""
from __future__ import annotations

import pathlib

import numpy as np
import onnx
import pytest
from onnx import helper

import onnx_lrp
from family_helpers import lrp0_composite
from model_builders import INT64, make_model, randn, vi
from onnx_lrp.specialize import dependence, specialize

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "exporters"
BIG = np.iinfo(np.int64).max


def _chunk_model(shape_derived: bool) -> onnx.ModelProto:
    """x (N,4,3) split in two along axis 1 (bounds from Shape, or constants), each half scaled
    by its own weights, concatenated, Flatten, Gemm. Both variants compute the same function."""
    r = np.random.default_rng(1)
    inits = {"wa": r.standard_normal((1, 2, 3)).astype(np.float32),
             "wb": r.standard_normal((1, 2, 3)).astype(np.float32),
             "fc": r.standard_normal((12, 3)).astype(np.float32), "ax": np.array([1]),
             "zero": np.array([0]), "big": np.array([BIG]), "two": np.array(2), "one": np.array(1)}
    if shape_derived:  # as torch's TorchScript exporter writes x.chunk(2, dim=1)
        nodes = [helper.make_node("Shape", ["x"], ["s"]),
                 helper.make_node("Gather", ["s", "one"], ["c"], axis=0),
                 helper.make_node("Div", ["c", "two"], ["half0"]),
                 helper.make_node("Unsqueeze", ["half0", "zero"], ["half"])]
    else:
        inits["half"] = np.array([2])
        nodes = []
    nodes += [helper.make_node("Slice", ["x", "zero", "half", "ax"], ["a"]),
              helper.make_node("Slice", ["x", "half", "big", "ax"], ["b"]),
              helper.make_node("Mul", ["a", "wa"], ["a2"]),
              helper.make_node("Mul", ["b", "wb"], ["b2"]),
              helper.make_node("Concat", ["a2", "b2"], ["cat"], axis=1),
              helper.make_node("Flatten", ["cat"], ["flat"], axis=1),
              helper.make_node("Gemm", ["flat", "fc"], ["y"])]
    return make_model(nodes, [vi("x", ["N", 4, 3])], [vi("y", ["N", 3])], inits)


def _class_token_model() -> onnx.ModelProto:
    """x (N,T,D): a class token expanded to the batch (its shape from Shape(x)[0]) is prepended,
    position embeddings sliced to the token count (from Shape) are added, then mean over tokens
    and a dense head."""
    r = np.random.default_rng(2)
    inits = {"cls": r.standard_normal((1, 1, 4)).astype(np.float32),
             "pos": r.standard_normal((1, 9, 4)).astype(np.float32),
             "head": r.standard_normal((4, 3)).astype(np.float32),
             "i0": np.array([0]), "i1": np.array([1]), "d": np.array([1, 4]), "one": np.array(1)}
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Slice", ["s", "i0", "i1"], ["n"]),
             helper.make_node("Concat", ["n", "d"], ["cls_shape"], axis=0),
             helper.make_node("Expand", ["cls", "cls_shape"], ["cls_n"]),
             helper.make_node("Concat", ["cls_n", "x"], ["tokens"], axis=1),
             helper.make_node("Shape", ["tokens"], ["ts"]),
             helper.make_node("Gather", ["ts", "i1"], ["t"], axis=0),
             helper.make_node("Slice", ["pos", "i0", "t", "i1"], ["pos_t"]),
             helper.make_node("Add", ["tokens", "pos_t"], ["emb"]),
             helper.make_node("ReduceMean", ["emb"], ["pooled"], axes=[1], keepdims=0),
             helper.make_node("MatMul", ["pooled", "head"], ["y"])]
    return make_model(nodes, [vi("x", ["N", "T", 4])], [vi("y", ["N", 3])], inits)


def test_shape_derived_slice_explains_like_constant_bounds():
    x = randn((3, 4, 3))
    derived = onnx_lrp.Explainer(_chunk_model(True), composite=lrp0_composite()).explain(x)
    constant = onnx_lrp.Explainer(_chunk_model(False), composite=lrp0_composite()).explain(x)
    np.testing.assert_allclose(derived.relevance, constant.relevance, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(derived.conservation(), 1.0, rtol=1e-5)


def test_shape_arithmetic_is_folded_and_the_batch_stays_free():
    explainer = onnx_lrp.Explainer(_class_token_model(), composite=lrp0_composite())
    g = explainer.graph((5, 4))
    ops = [n.op_type for n in g.model.graph.node]
    assert "Gather" not in ops, "the token count should be a compile-time constant"
    assert ops.count("Shape") == 1, "only the batch size is read at run time (for the class token)"
    assert g.const("pos_t").shape == (1, 6, 4)
    for n in (1, 4):  # one compiled graph serves any batch
        result = explainer.explain(randn((n, 5, 4), seed=n), target=1)
        assert result.relevance.shape == (n, 5, 4)
        assert explainer.sessions.programs() == 1


def test_class_token_and_position_embedding_are_constants():
    """Relevance at the class token is dropped (it is a constant), the added position embedding
    is passed like a bias (Pass rule): what reaches x is the patch tokens' share."""
    model = _class_token_model()
    x = randn((2, 5, 4))
    result = onnx_lrp.Explainer(model, composite=lrp0_composite()).explain(x, target=0)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    emb = np.concatenate([np.broadcast_to(inits["cls"], (2, 1, 4)), x], axis=1) + inits["pos"][:, :6]
    contrib = emb / 6 * inits["head"][:, 0]  # LRP-0 through mean and MatMul: each token's share
    # Pass on the Add: each token's relevance reaches tokens unchanged; the class token's is dropped
    np.testing.assert_allclose(result.relevance, contrib[:, 1:], rtol=1e-5, atol=1e-6)


def test_values_that_change_with_the_batch_stay_computed():
    model = _class_token_model()
    dep = dependence(model)
    assert {"s", "n", "cls_shape", "ts", "t", "pos_t"}.isdisjoint(dep.values)
    samples = [{"x": randn((b, 5, 4))} for b in (1, 2)]
    folded = {t.name for t in specialize(model, samples, "m").graph.initializer}
    assert "pos_t" in folded and "t" not in folded  # folded into pos_t, which is all that reads it
    assert "cls_shape" not in folded and "cls_n" not in folded  # (N, 1, 4): depends on the batch


def test_shapes_that_depend_on_values_are_not_folded():
    """Shape(NonZero(x > 0)) depends on the data, not only on its shape."""
    nodes = [helper.make_node("Greater", ["x", "zero_f"], ["pos"]),
             helper.make_node("NonZero", ["pos"], ["nz"]),
             helper.make_node("Shape", ["nz"], ["s"]),
             helper.make_node("Shape", ["x"], ["sx"])]
    model = make_model(nodes, [vi("x", ["N", 4])], [vi("s", [2], INT64), vi("sx", [2], INT64)],
                       {"zero_f": np.zeros((), np.float32)})
    dep = dependence(model)
    assert "s" in dep.values and "sx" not in dep.values


@pytest.mark.parametrize("name", ["shuffle_chunk", "tiny_vit"])
def test_both_torch_exporters_explain_alike_and_conserve(name):
    """tools/make_shape_fixtures.py: the TorchScript exporter computes the chunk bounds, the class
    token's shape and the position embeddings' length from Shape; dynamo writes constants. Same
    weights, so the same relevance; no biases, so LRP-0 conserves."""
    x = randn((3, 3, 8, 8))
    results = [onnx_lrp.Explainer(FIXTURES / f"{name}_{exporter}.onnx", composite=lrp0_composite()).explain(x)
               for exporter in ("torchscript", "dynamo")]
    np.testing.assert_allclose(results[0].relevance, results[1].relevance, rtol=1e-4, atol=1e-6)
    for result in results:
        np.testing.assert_allclose(result.conservation(), 1.0, rtol=1e-4)
    ops = {n.op_type for n in onnx.load(str(FIXTURES / f"{name}_torchscript.onnx")).graph.node}
    assert "Shape" in ops  # the fixture does exercise shape arithmetic


def test_shape_arithmetic_that_would_allocate_too_much_is_refused_before_it_runs():
    """ConstantOfShape(Shape(x) · [1, 10⁹]) is static: it is screened before onnxruntime evaluates it."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Mul", ["s", "big"], ["s2"]),
             helper.make_node("ConstantOfShape", ["s2"], ["z"],
                              value=helper.make_tensor("v", onnx.TensorProto.FLOAT, [1], [1.0])),
             helper.make_node("ReduceSum", ["z"], ["t"], keepdims=0), helper.make_node("Mul", ["x", "t"], ["y"])]
    model = make_model(nodes, [vi("x", ["N", 4])], [vi("y", ["N", 4])], {"big": np.array([1, 10 ** 9])})
    with pytest.raises(onnx_lrp.OnnxLrpError, match="'z'.*4,000,000,000 elements"):
        onnx_lrp.Explainer(model, composite="epsilon").explain(randn((1, 4)))
