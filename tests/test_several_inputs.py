"""Several inputs: explained ones, fed ones (states, masks, scalars), integer ids through an
embedding, and the saved explainer that takes the feeds."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

import onnx_lrp
from family_helpers import lrp0_composite
from model_builders import INT64, make_model, randn, run, vi

FLOAT = onnx.TensorProto.FLOAT


def _two_inputs() -> onnx.ModelProto:
    """y = Relu(x·A + aux·B)·C: x (N,4) and aux (N,3) both data."""
    r = np.random.default_rng(3)
    inits = {"A": r.standard_normal((4, 5)).astype(np.float32), "B": r.standard_normal((3, 5)).astype(np.float32),
             "C": r.standard_normal((5, 2)).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "A"], ["xa"]), helper.make_node("MatMul", ["aux", "B"], ["ab"]),
             helper.make_node("Add", ["xa", "ab"], ["s"]), helper.make_node("Relu", ["s"], ["h"]),
             helper.make_node("MatMul", ["h", "C"], ["y"])]
    return make_model(nodes, [vi("x", ["N", 4]), vi("aux", ["N", 3])], [vi("y", ["N", 2])], inits)


def _lrp0_oracle(x, aux, inits, target):
    """float64 LRP-0 by hand: z-rule through C, Relu passes, Norm splits the sum by share,
    z-rule through A and B."""
    xa, ab = x @ inits["A"], aux @ inits["B"]
    s = xa + ab
    h = np.maximum(s, 0)
    y = h @ inits["C"]
    r_h = h * inits["C"][:, target] * (y[:, target] / y[:, target])[:, None]
    ratio = np.divide(r_h, s, out=np.zeros_like(s), where=s != 0)
    r_xa, r_ab = xa * ratio, ab * ratio
    r_x = x * (np.divide(r_xa, xa, out=np.zeros_like(xa), where=xa != 0) @ inits["A"].T)
    r_aux = aux * (np.divide(r_ab, ab, out=np.zeros_like(ab), where=ab != 0) @ inits["B"].T)
    return r_x, r_aux


def _inits(model):
    return {t.name: onnx.numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}


def test_both_inputs_explained_against_an_oracle_and_conserving():
    model = _two_inputs()
    x, aux = randn((3, 4), 1), randn((3, 3), 2)
    exp = onnx_lrp.Explainer(model, input_name=["x", "aux"], composite=lrp0_composite())
    res = exp.explain({"x": x, "aux": aux}, target=1)
    r_x, r_aux = _lrp0_oracle(x.astype(np.float64), aux.astype(np.float64), _inits(model), 1)
    assert set(res.relevances) == {"x", "aux"}
    np.testing.assert_allclose(res.relevances["x"], r_x, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(res.relevances["aux"], r_aux, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(res.relevance, res.relevances["x"])
    np.testing.assert_allclose(res.conservation(), 1.0, rtol=1e-4)


def test_one_input_explained_the_other_fed():
    """aux fed: its contribution x·A + (aux·B) is a constant added to the signal (Pass, as a bias)."""
    model = _two_inputs()
    x, aux = randn((3, 4), 1), randn((3, 3), 2)
    exp = onnx_lrp.Explainer(model, input_name="x", composite=lrp0_composite())
    assert exp.feed_names == ["aux"]
    res = exp.explain(x, target=0, feeds={"aux": aux})
    np.testing.assert_allclose(res.output, run(model, {"x": x, "aux": aux})["y"], rtol=1e-5, atol=1e-6)
    i = _inits(model)
    h = np.maximum(x @ i["A"] + aux @ i["B"], 0)
    r_xa = h * i["C"][:, 0]  # Pass through the Add: the sum's relevance all reaches x·A
    xa = x @ i["A"]
    expected = x * (np.divide(r_xa, xa, out=np.zeros_like(xa), where=xa != 0) @ i["A"].T)
    np.testing.assert_allclose(res.relevance, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(res.conservation(), 1.0, rtol=1e-4)
    chunked = exp.explain(x, target=0, feeds={"aux": aux}, batch_size=1)  # feeds split along with x
    np.testing.assert_allclose(chunked.relevance, res.relevance, rtol=1e-6, atol=1e-7)


def test_feed_without_batch_axis_is_given_whole():
    """A scalar feed scales the data (a run-time constant weight): broadcast to every chunk."""
    w = randn((3, 2), 4)
    model = make_model([helper.make_node("Mul", ["x", "scale"], ["xs"]), helper.make_node("MatMul", ["xs", "w"], ["y"])],
                       [vi("x", ["N", 3]), vi("scale", [])], [vi("y", ["N", 2])], {"w": w})
    x = randn((4, 3), 5)
    exp = onnx_lrp.Explainer(model, input_name="x", composite=onnx_lrp.composites.EpsilonComposite(epsilon=0.0))
    scale = np.float32(-2.5)
    res = exp.explain(x, target=1, feeds={"scale": scale}, batch_size=3)
    np.testing.assert_allclose(res.output, (x * scale) @ w, rtol=1e-5)
    # LRP-0 through the run-time Mul (Epsilon: x ⊙ VJP(R / z)) and the MatMul: z-rule shares
    np.testing.assert_allclose(res.relevance, x * scale * w[:, 1], rtol=1e-4, atol=1e-5)


def test_feed_errors_name_what_is_wrong():
    exp = onnx_lrp.Explainer(_two_inputs(), input_name="x")
    x = randn((2, 4))
    with pytest.raises(onnx_lrp.InvalidInput, match=r"also reads.*\['aux'\].*feeds="):
        exp.explain(x)
    with pytest.raises(onnx_lrp.InvalidInput, match=r"'bogus'.*\['aux'\]"):
        exp.explain(x, feeds={"aux": randn((2, 3)), "bogus": x})
    with pytest.raises(onnx_lrp.InvalidInput, match=r"feed 'aux'.*float32.*int64"):
        exp.explain(x, feeds={"aux": np.zeros((2, 3), np.int64)})
    with pytest.raises(onnx_lrp.InvalidInput, match=r"feed 'aux'.*rank 2"):
        exp.explain(x, feeds={"aux": randn((2,))})
    with pytest.raises(onnx_lrp.InvalidInput, match=r"feed 'aux'.*axis 1"):
        exp.explain(x, feeds={"aux": randn((2, 5))})
    with pytest.raises(onnx_lrp.InvalidInput, match=r"'nope'.*\['x', 'aux'\]"):
        onnx_lrp.Explainer(_two_inputs(), input_name=["x", "nope"])
    with pytest.raises(onnx_lrp.InvalidInput, match="several inputs.*input_name=.*feeds="):
        onnx_lrp.Explainer(_two_inputs())


def test_saved_explainer_takes_the_feeds(tmp_path):
    model = _two_inputs()
    x, aux = randn((3, 4), 1), randn((3, 3), 2)
    exp = onnx_lrp.Explainer(model, input_name="x", composite=lrp0_composite())
    expected = exp.explain(x, target=1, feeds={"aux": aux})
    path = exp.save(tmp_path / "e.onnx", input_shape={"x": (1, 4), "aux": (1, 3)})
    saved = onnx.load(str(path))
    assert [i.name for i in saved.graph.input] == ["x", "aux", "target"]
    out = run(saved, {"x": x, "aux": aux, "target": np.full(3, 1, np.int64)})
    np.testing.assert_allclose(out["relevance"], expected.relevance, rtol=1e-6, atol=1e-7)


def test_output_name_and_output_alias():
    model = _two_inputs()
    exp = onnx_lrp.Explainer(model, input_name=["x", "aux"], output_name="y")
    assert exp.output_name == "y"
    with pytest.raises(onnx_lrp.InvalidInput, match="disagree"):
        onnx_lrp.Explainer(model, input_name="x", output="y", output_name="s")


# --- integer inputs ------------------------------------------------------------------------------

def _embedding_model(ids_name: str = "input_ids", mask: bool = False) -> onnx.ModelProto:
    """ids (N,T) -> Gather(table (V,H)) -> [× mask (N,T) as float] -> mean over T -> MatMul head."""
    r = np.random.default_rng(6)
    inits = {"table": r.standard_normal((10, 4)).astype(np.float32),
             "head": r.standard_normal((4, 3)).astype(np.float32), "ax": np.array([1]), "last": np.array([-1])}
    nodes = [helper.make_node("Gather", ["table", ids_name], ["emb"], axis=0)]
    inputs = [vi(ids_name, ["N", "T"], INT64)]
    pooled_from = "emb"
    if mask:
        nodes += [helper.make_node("Cast", ["attention_mask"], ["mf"], to=FLOAT),
                  helper.make_node("Unsqueeze", ["mf", "last"], ["m3"]),
                  helper.make_node("Mul", ["emb", "m3"], ["masked"])]
        inputs.append(vi("attention_mask", ["N", "T"], INT64))
        pooled_from = "masked"
    nodes += [helper.make_node("ReduceSum", [pooled_from, "ax"], ["pooled"], keepdims=0),
              helper.make_node("MatMul", ["pooled", "head"], ["y"])]
    return make_model(nodes, inputs, [vi("y", ["N", 3])], inits)


@pytest.mark.parametrize("ids_name", ["input_ids", "tokens"])
def test_token_ids_through_an_embedding_gather(ids_name):
    model = _embedding_model(ids_name)
    ids = np.array([[1, 5, 5, 2], [0, 9, 3, 3]])
    exp = onnx_lrp.Explainer(model, composite=lrp0_composite())  # found: by name, or as embedding indices
    assert exp.input_names == [ids_name]
    res = exp.explain(ids, target=2)
    assert res.sources == {ids_name: "emb"}
    table, head = (onnx.numpy_helper.to_array(t) for t in model.graph.initializer[:2])
    expected = table[ids] * head[:, 2]  # LRP-0 through a sum and a matrix: each term its own share
    np.testing.assert_allclose(res.relevance, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.per_position(), expected.sum(-1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.conservation(), 1.0, rtol=1e-5)


def test_attention_mask_fed_as_a_constant():
    """The mask is a feed: the masked tokens get no relevance, the kept ones all of it."""
    model = _embedding_model(mask=True)
    ids = np.array([[1, 5, 5, 2], [0, 9, 3, 3]])
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]])
    exp = onnx_lrp.Explainer(model, composite=lrp0_composite())
    assert exp.feed_names == ["attention_mask"]
    res = exp.explain(ids, target=0, feeds={"attention_mask": mask})
    per_token = res.per_position()
    assert per_token.shape == (2, 4)
    assert (per_token[mask == 0] == 0).all()
    np.testing.assert_allclose(res.conservation(), 1.0, rtol=1e-5)
    with pytest.raises(onnx_lrp.InvalidInput, match="ids.*int64.*float32|int64.*float32"):
        exp.explain(ids.astype(np.float32), feeds={"attention_mask": mask})


def test_state_feed_with_the_batch_on_axis_1():
    """A recurrent-style state (layers, N, H) fed beside x (N, H): split along its own batch axis
    (found by the batch's name), chunked with x, and declared so in the saved explainer."""
    w = randn((3, 2), 12)
    nodes = [helper.make_node("ReduceSum", ["state", "zero"], ["s"], keepdims=0),
             helper.make_node("Add", ["x", "s"], ["h"]), helper.make_node("MatMul", ["h", "w"], ["y"])]
    model = make_model(nodes, [vi("x", ["batch", 3]), vi("state", [2, "batch", 3])], [vi("y", ["batch", 2])],
                       {"w": w, "zero": np.array([0])})
    x, state = randn((3, 3), 13), randn((2, 3, 3), 14)
    exp = onnx_lrp.Explainer(model, input_name="x", composite=lrp0_composite())
    whole = exp.explain(x, target=1, feeds={"state": state})
    np.testing.assert_allclose(whole.output, (x + state.sum(0)) @ w, rtol=1e-5, atol=1e-6)
    chunked = exp.explain(x, target=1, feeds={"state": state}, batch_size=2)
    np.testing.assert_allclose(chunked.relevance, whole.relevance, rtol=1e-6, atol=1e-7)
    h = x + state.sum(0)  # Pass through the Add of a constant: the whole z-rule share of h reaches x
    np.testing.assert_allclose(whole.relevance, h * w[:, 1], rtol=1e-4, atol=1e-5)
    with pytest.raises(onnx_lrp.InvalidInput, match="batch on axis 1"):
        exp.explain(x, feeds={"state": randn((2, 2, 3))})
    compiled = exp.compile({"x": (3,), "state": (2, 3)})
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in compiled.model.graph.input}
    assert dims["state"] == [2, "N", 3]
