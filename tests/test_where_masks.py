"""Attention masks applied with ``Where``, as torch's dynamo exporter writes them, explain as the
additive mask does.

The seeded BERT fixture (tools/make_attnlrp_fixtures.py, token ids, its last two tokens padded) adds
``(1 − mask) · finfo.min`` to the scores. Here each attention layer is rewritten into the forms the
dynamo exporter writes (checked against torch 2.14's exports of the same PyTorch code):

* ``masked_fill``: ``scores.masked_fill(~mask, fill)`` -> ``Where(Not(mask), fill, scores)``;
* ``where_scores``: ``torch.where(mask, scores, fill)`` -> ``Where(mask, scores, fill)``;
* ``sdpa_bool``: ``scaled_dot_product_attention(..., attn_mask=bool)`` -> ``Add(scores,
  Where(mask, 0, -inf))``, then ``Where(IsNaN(p), 0, p)`` after the softmax (torchlib's guard
  against fully masked rows);

with ``fill`` = −inf or float32's lowest. The relevance must equal the additive form's to float32
rounding and agree with LXT 2.1 (the reference stored with the fixture).
"""
import functools
import pathlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnx_lrp

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "attnlrp"
SAME = 1e-5
FILLS = {"-inf": -np.inf, "lowest": float(np.finfo(np.float32).min)}


def _masked_scores(model):
    """The ``Add(scores, extended_mask)`` nodes that feed a Softmax."""
    producers = {t: n for n in model.graph.node for t in n.output}
    return [producers[n.input[0]] for n in model.graph.node
            if n.op_type == "Softmax" and producers[n.input[0]].op_type == "Add"]


def rewrite_mask(form: str, fill: float) -> onnx.ModelProto:
    model = onnx.load(FIXTURES / "bert_ids__torchscript.onnx")
    graph = model.graph
    adds = _masked_scores(model)
    assert len(adds) == 2
    graph.initializer.extend([numpy_helper.from_array(np.array(fill, np.float32), "mask_fill"),
                              numpy_helper.from_array(np.array(0.0, np.float32), "mask_zero"),
                              numpy_helper.from_array(np.array([1, 2], np.int64), "mask_axes")])
    keep = [helper.make_node("Cast", ["attention_mask"], ["mask_bool"], to=TensorProto.BOOL),
            helper.make_node("Unsqueeze", ["mask_bool", "mask_axes"], ["mask_keep"]),
            helper.make_node("Not", ["mask_keep"], ["mask_hide"])]
    nodes = list(graph.node)
    for i, add in enumerate(adds):
        scores, out = add.input[0], add.output[0]
        if form == "masked_fill":
            new = [helper.make_node("Where", ["mask_hide", "mask_fill", scores], [out], name=f"masked_fill_{i}")]
        elif form == "where_scores":
            new = [helper.make_node("Where", ["mask_keep", scores, "mask_fill"], [out], name=f"where_{i}")]
        else:  # sdpa_bool
            softmax = next(n for n in nodes if n.op_type == "Softmax" and n.input[0] == out)
            probs = softmax.output[0]
            softmax.output[0] = f"sdpa_raw_{i}"
            new = [helper.make_node("Where", ["mask_keep", "mask_zero", "mask_fill"], [f"sdpa_bias_{i}"]),
                   helper.make_node("Add", [scores, f"sdpa_bias_{i}"], [out])]
            guard = [helper.make_node("IsNaN", [f"sdpa_raw_{i}"], [f"sdpa_nan_{i}"]),
                     helper.make_node("Where", [f"sdpa_nan_{i}", "mask_zero", f"sdpa_raw_{i}"], [probs])]
            at = nodes.index(softmax)
            nodes[at + 1:at + 1] = guard
        at = nodes.index(add)
        nodes[at:at + 1] = new
    del graph.node[:]
    graph.node.extend(keep + nodes)
    onnx.checker.check_model(model)
    return model


def explain(model, ref):
    explainer = onnx_lrp.Explainer(model, composite="attnlrp", input_name="input_ids")
    return explainer.explain(ref["input_ids"], feeds={"attention_mask": ref["attention_mask"]}, target=ref["target"])


@functools.lru_cache(maxsize=None)
def additive_mask_relevance() -> np.ndarray:
    return explain(FIXTURES / "bert_ids__torchscript.onnx", np.load(FIXTURES / "bert_ids__attnlrp.npz"))


@pytest.mark.parametrize("form", ["masked_fill", "where_scores", "sdpa_bool"])
@pytest.mark.parametrize("fill", list(FILLS))
def test_where_mask_explains_as_the_additive_mask(form, fill):
    ref = np.load(FIXTURES / "bert_ids__attnlrp.npz")
    assert ref["attention_mask"][0, -1] == 0  # the fixture pads: the mask matters
    got = explain(rewrite_mask(form, FILLS[fill]), ref)
    want = additive_mask_relevance()
    np.testing.assert_allclose(got.target_output, want.target_output, rtol=1e-6)
    r, base = got.relevance.astype(np.float64), want.relevance.astype(np.float64)
    assert np.isfinite(r).all()
    assert np.abs(r - base).max() / np.abs(base).max() <= SAME
    lxt = ref["relevance"].astype(np.float64)
    assert np.corrcoef(r.ravel(), lxt.ravel())[0, 1] >= 0.9999 and np.abs(r - lxt).max() / np.abs(lxt).max() <= 1e-3
