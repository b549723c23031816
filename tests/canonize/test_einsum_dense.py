"""rewrite_einsum_dense: an Einsum of the data and a constant weight becomes a MatMul (with
Transposes and Reshapes around it), so the dense rules explain it; other forms are refused."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import onnx_lrp
from canon_helpers import assert_same_outputs, make_model, op_counts, randn, vi
from onnx_lrp.canonize import _ranks as ranks_of
from onnx_lrp.canonize import rewrite_einsum_dense
from onnx_lrp.composites import Composite
from onnx_lrp.errors import UnsupportedOp
from onnx_lrp.rules import Epsilon, Gamma, ZPlus


def _einsum(equation, sample, weight_shape, weight_first=False):
    inputs = ["w", "x"] if weight_first else ["x", "w"]
    operands = [np.zeros((2, *sample)), np.zeros(weight_shape)]
    out = list(np.einsum(equation, *(operands[::-1] if weight_first else operands)).shape)
    out = ["N", *out[1:]] if out and out[0] == 2 else out  # the batch, kept first
    return make_model([helper.make_node("Einsum", inputs, ["y"], name="dense", equation=equation)],
                      [vi("x", ["N", *sample])], [vi("y", out)], {"w": randn(weight_shape, 11)})


@pytest.mark.parametrize("equation, sample, weight_shape, weight_first", [
    ("btf,fh->bth", (3, 4), (4, 5), False),              # Keras EinsumDense on a sequence
    ("bsd,dnh->bsnh", (3, 4), (4, 2, 3), False),         # q/k/v projection into heads
    ("bsnh,nhd->bsd", (3, 2, 3), (2, 3, 4), False),      # output projection, two contracted indices
    ("bij,jik->bk", (3, 4), (4, 3, 5), False),           # contracted indices in another order
    ("fh,btf->bht", (3, 4), (4, 5), True),               # weight first, output permuted
    ("bd,dhz->bzh", (4,), (4, 5, 2), False),             # new features permuted
    ("btf,fh", (3, 4), (4, 5), False),                   # implicit output (alphabetical: bht)
    ("...d,dh->...h", (3, 4), (4, 5), False),            # ellipsis over the leading axes
    ("btf,fhq->bth", (3, 4), (4, 5, 2), False),          # q summed inside the weight
    ("btf,f->bt", (3, 4), (4,), False),                  # one output feature, dropped
])
def test_rewrite_equals_onnxruntime_einsum(equation, sample, weight_shape, weight_first):
    model = _einsum(equation, sample, weight_shape, weight_first)
    rewritten = rewrite_einsum_dense(model, ranks_of(model))
    counts = op_counts(rewritten)
    assert counts["Einsum"] == 0 and counts["MatMul"] == 1, counts
    for batch in (1, 3):
        assert_same_outputs(model, rewritten, {"x": randn((batch, *sample), batch)})


@pytest.mark.parametrize("equation, sample, weight_shape, why", [
    ("bnd,nde->bne", (2, 3), (2, 3, 4), "weight per position or head"),
    ("bii,ih->bh", (3, 3), (3, 4), "diagonal"),
    ("btf,fh->bh", (3, 4), (4, 5), "summed inside the data"),
    ("btf,bh->tfh", (3, 4), (2, 5), "batch"),
    ("btf,...fh->...bth", (3, 4), (4, 5), "ellipsis in the weight"),
])
def test_other_forms_are_refused_naming_node_and_equation(equation, sample, weight_shape, why):
    model = _einsum(equation, sample, weight_shape)
    assert op_counts(rewrite_einsum_dense(model, ranks_of(model)))["Einsum"] == 1
    with pytest.raises(UnsupportedOp, match=f"'dense'.*'{equation.replace('.', '[.]')}'.*{why}"):
        onnx_lrp.Explainer(model).explain(randn((2, *sample), 5))


# --- the same two-layer model written with Einsum and with MatMul ---------------------------------

W_IN, W_OUT = randn((6, 2, 3), 21), randn((2, 3, 5), 22)   # d -> (n, h) -> e, zero biases


def _two_layers(einsum: bool):
    """x (N, S, 6) -> heads (N, S, 2, 3) -> Relu -> (N, S, 5)."""
    if einsum:
        nodes = [helper.make_node("Einsum", ["x", "w_in"], ["heads"], name="proj_in", equation="bsd,dnh->bsnh"),
                 helper.make_node("Relu", ["heads"], ["act"], name="relu"),
                 helper.make_node("Einsum", ["act", "w_out"], ["y"], name="proj_out", equation="bsnh,nhe->bse")]
        inits = {"w_in": W_IN, "w_out": W_OUT}
    else:
        nodes = [helper.make_node("MatMul", ["x", "w_in"], ["flat"], name="proj_in"),
                 helper.make_node("Reshape", ["flat", "heads_shape"], ["heads"], name="to_heads"),
                 helper.make_node("Relu", ["heads"], ["act"], name="relu"),
                 helper.make_node("Reshape", ["act", "rows_shape"], ["rows"], name="from_heads"),
                 helper.make_node("MatMul", ["rows", "w_out"], ["y"], name="proj_out")]
        inits = {"w_in": W_IN.reshape(6, 6), "w_out": W_OUT.reshape(6, 5),
                 "heads_shape": np.array([0, 0, 2, 3], np.int64), "rows_shape": np.array([0, 0, 6], np.int64)}
    return make_model(nodes, [vi("x", ["N", 4, 6])], [vi("y", ["N", 4, 5])], inits)


@pytest.mark.parametrize("rule", [Epsilon(0.0), Epsilon(0.25), ZPlus(), Gamma(0.25)], ids=repr)
def test_relevance_equals_the_matmul_model(rule):
    x, composite = randn((3, 4, 6), 23), Composite(layer_map={"dense": rule})
    got = onnx_lrp.Explainer(_two_layers(True), composite=composite).explain(x, target=7)
    want = onnx_lrp.Explainer(_two_layers(False), composite=composite).explain(x, target=7)
    np.testing.assert_allclose(got.output, want.output, rtol=1e-6, atol=1e-6)
    scale = np.abs(want.relevance).max()
    assert scale > 0
    np.testing.assert_allclose(got.relevance, want.relevance, rtol=1e-5, atol=1e-6 * scale)


def test_lrp0_conserves_through_einsum_dense_layers():
    x = randn((3, 4, 6), 24)
    result = onnx_lrp.Explainer(_two_layers(True), composite=Composite(layer_map={"dense": Epsilon(0.0)})) \
        .explain(x, target=7)
    target = result.output.reshape(3, -1)[:, 7]
    np.testing.assert_allclose(result.relevance.reshape(3, -1).sum(1), target, rtol=1e-5)


def test_einsum_projections_around_attention_are_attention_projections():
    """q, k, v and output projections written as Einsum keep the category LXT's ViT recipe selects."""
    from onnx_lrp.compile import plan_nodes

    nodes = [helper.make_node("Einsum", ["x", f"w_{p}"], [p], name=f"proj_{p}", equation="btf,fnh->btnh")
             for p in "qkv"]
    nodes += [helper.make_node("Einsum", ["q", "k"], ["scores"], name="qk", equation="bqnh,bknh->bnqk"),
              helper.make_node("Softmax", ["scores"], ["probs"], name="softmax", axis=-1),
              helper.make_node("Einsum", ["probs", "v"], ["context"], name="av", equation="bnqk,bknh->bqnh"),
              helper.make_node("Einsum", ["context", "w_o"], ["attended"], name="proj_o", equation="bqnh,nhf->bqf"),
              helper.make_node("Einsum", ["attended", "w_mlp"], ["y"], name="mlp", equation="btf,fe->bte")]
    inits = {f"w_{p}": randn((4, 2, 3), 30 + i) for i, p in enumerate("qkv")}
    inits.update(w_o=randn((2, 3, 4), 34), w_mlp=randn((4, 5), 35))
    model = make_model(nodes, [vi("x", ["N", 3, 4])], [vi("y", ["N", 3, 5])], inits)
    steps = plan_nodes(onnx_lrp.Explainer(model).graph((3, 4)), onnx_lrp.composites.get("cp_lrp"))
    categories = {s.node.name: s.category for s in steps}
    assert {n for n, c in categories.items() if c == "attention_projection"} == {"proj_q", "proj_k", "proj_v",
                                                                                 "proj_o"}
    assert categories["mlp"] == "dense"


@pytest.mark.parametrize("bias_shape, absorbed", [((2, 3), True), ((1, 1, 2, 3), True), ((3,), True),
                                                  ((3, 2, 3), False)])
def test_a_bias_over_the_new_features_becomes_the_dense_layers_bias(bias_shape, absorbed):
    """``bsd,dnh->bsnh`` then ``+ b[n, h]`` (Keras EinsumDense's bias): one Gemm with b flattened, so
    the dense rule sees it; a bias per position stays an Add."""
    from onnx_lrp.canonize import canonize

    model = make_model([helper.make_node("Einsum", ["x", "w"], ["z"], name="dense", equation="bsd,dnh->bsnh"),
                        helper.make_node("Add", ["z", "b"], ["y"], name="bias")],
                       [vi("x", ["N", 3, 4])], [vi("y", ["N", 3, 2, 3])],
                       {"w": randn((4, 2, 3), 40), "b": randn(bias_shape, 41)})
    canonized = canonize(model, "y").model
    counts = op_counts(canonized)
    assert (counts["Gemm"], counts["Add"]) == ((1, 0) if absorbed else (0, 1)), counts
    for batch in (1, 3):
        assert_same_outputs(model, canonized, {"x": randn((batch, 3, 4), 42)})
