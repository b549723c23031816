"""expand_contrib_ops: each fused ``com.microsoft`` op onnxruntime's transformer optimizer writes,
expanded into standard ONNX ops, computes what onnxruntime's own contrib kernel computes (random
inputs, every mask form, unidirectional, scale, qkv_hidden_sizes, ...); forms without an expansion
are refused by name."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from canon_helpers import run, vi
from onnx_lrp.canonize import expand_contrib_ops
from onnx_lrp.errors import UnsupportedOp

MS = "com.microsoft"
B, S, D, N = 2, 5, 12, 3


def contrib_model(node, inputs, outputs, inits=None, opset=17):
    tensors = [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()]
    graph = helper.make_graph([node], "contrib", inputs, outputs, initializer=tensors)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(MS, 1)])
    model.ir_version = 8
    return model


def rand(shape, seed, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def assert_expansion_matches(model, feeds, rtol=1e-5, atol=1e-6):
    """onnxruntime's contrib kernel and the expanded graph agree; no contrib op is left."""
    expanded = expand_contrib_ops(model)
    assert not any(n.domain == MS or n.op_type == "SimplifiedLayerNormalization" for n in expanded.graph.node)
    assert all(o.domain != MS for o in expanded.opset_import)
    onnx.checker.check_model(expanded, full_check=True)
    want, got = run(model, feeds), run(expanded, feeds)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=rtol, atol=atol, err_msg=name)
    return expanded


# --- Attention ---------------------------------------------------------------------------
def attention_model(mask_shape=None, mask_elem=TensorProto.INT32, sizes=(D, D, D), bias=True,
                    attention_bias=False, **attrs):
    inits = {"w": rand((D, sum(sizes)), 1, 0.4)}
    inputs = ["x", "w", "b" if bias else ""]
    if bias:
        inits["b"] = rand((sum(sizes),), 2, 0.2)
    graph_inputs = [vi("x", [B, S, D])]
    if mask_shape is not None or attention_bias:
        inputs.append("mask" if mask_shape is not None else "")
    if mask_shape is not None:
        graph_inputs.append(vi("mask", list(mask_shape), mask_elem))
    if attention_bias:
        inputs += ["", "attn_bias"]
        graph_inputs.append(vi("attn_bias", [1, N, S, S]))
    if sizes[0] != sizes[2]:
        attrs["qkv_hidden_sizes"] = list(sizes)
    node = helper.make_node("Attention", inputs, ["y"], name="attn", domain=MS, num_heads=N, **attrs)
    return contrib_model(node, graph_inputs, [vi("y", [B, S, sizes[2]])], inits)


X = rand((B, S, D), 3)
MASKS = {
    "none": None,
    "lengths": np.array([5, 3], np.int32),                               # (B): right padding
    "ends_starts": np.array([5, 4, 0, 2], np.int32),                     # (2B): left padding too
    "raw_2d": np.array([[1, 1, 0, 1, 1], [1, 0, 1, 1, 0]], np.int32),    # (B, T) with holes
    "raw_3d": (np.random.default_rng(4).random((B, S, S)) > 0.4).astype(np.int32),
}
MASKS["raw_3d"][..., 0] = 1  # no fully masked row


@pytest.mark.parametrize("mask", list(MASKS))
@pytest.mark.parametrize("unidirectional", [0, 1])
def test_attention_masks(mask, unidirectional):
    m = MASKS[mask]
    model = attention_model(None if m is None else m.shape, unidirectional=unidirectional)
    feeds = {"x": X} if m is None else {"x": X, "mask": m}
    expanded = assert_expansion_matches(model, feeds)
    ops = [n.op_type for n in expanded.graph.node]
    assert ops.count("MatMul") == 5 and ops.count("Softmax") == 1  # Q, K, V projections; QKᵀ; A·V


@pytest.mark.parametrize("attrs", [{"scale": 0.3}, {"mask_filter_value": -3.4028234663852886e38},
                                   {"mask_filter_value": -50.0}])
def test_attention_scale_and_filter_value(attrs):
    model = attention_model(MASKS["raw_2d"].shape, **attrs)
    assert_expansion_matches(model, {"x": X, "mask": MASKS["raw_2d"]})


def test_attention_qkv_hidden_sizes_without_bias_with_attention_bias():
    model = attention_model(MASKS["lengths"].shape, sizes=(D, D, 6), bias=False, attention_bias=True)
    assert_expansion_matches(model, {"x": X, "mask": MASKS["lengths"], "attn_bias": rand((1, N, S, S), 5)})


def test_attention_mask_of_another_integer_type():
    model = attention_model(MASKS["raw_2d"].shape, mask_elem=TensorProto.INT32)
    assert_expansion_matches(model, {"x": X, "mask": MASKS["raw_2d"]})


def _with(model, **changes):
    node = model.graph.node[0]
    for name, value in changes.items():
        if name == "inputs":
            del node.input[:]
            node.input.extend(value)
        elif name == "outputs":
            del node.output[:]
            node.output.extend(value)
            model.graph.output.extend([vi(t, None) for t in value[1:]])
        else:
            node.attribute.append(helper.make_attribute(name, value))
    return model


@pytest.mark.parametrize("change,words", [
    ({"inputs": ["x", "w", "b", "", "past"]}, "past state"),
    ({"outputs": ["y", "present"]}, "present"),
    ({"do_rotary": 1}, "rotary"),
    ({"past_present_share_buffer": 1}, "past_present_share_buffer"),
])
def test_attention_cache_and_rotary_forms_are_refused(change, words):
    model = _with(attention_model(), **change)
    with pytest.raises(UnsupportedOp, match=rf"node 'attn' \(op type 'Attention'.*{words}.*unfused"):
        expand_contrib_ops(model)


@pytest.mark.parametrize("shape,words", [((B, 1, S, S), "4-D"), ((3 * B + 2,), "packed")])
def test_attention_mask_forms_without_expansion_are_refused(shape, words):
    with pytest.raises(UnsupportedOp, match=rf"'attn'.*{words}"):
        expand_contrib_ops(attention_model(shape))


# --- MultiHeadAttention ------------------------------------------------------------------
L = 4  # key/value length (cross attention)


def mha_model(mask_shape=None, bias=True, v_hidden=D, **attrs):
    inputs = ["q", "k", "v", "b" if bias else ""]
    graph_inputs = [vi("q", [B, S, D]), vi("k", [B, L, D]), vi("v", [B, L, v_hidden])]
    inits = {"b": rand((2 * D + v_hidden,), 6, 0.3)} if bias else {}
    if mask_shape is not None:
        inputs.append("mask")
        graph_inputs.append(vi("mask", list(mask_shape), TensorProto.INT32))
    node = helper.make_node("MultiHeadAttention", inputs, ["y"], name="mha", domain=MS, num_heads=N, **attrs)
    return contrib_model(node, graph_inputs, [vi("y", [B, S, v_hidden])], inits)


MHA_FEEDS = {"q": rand((B, S, D), 7), "k": rand((B, L, D), 8), "v": rand((B, L, D), 9)}
MHA_MASKS = {"none": None, "lengths": np.array([4, 2], np.int32),
             "raw_2d": np.array([[1, 0, 1, 1], [1, 1, 1, 0]], np.int32),
             "raw_3d": np.concatenate([np.ones((B, S, 1), np.int32),
                                       (np.random.default_rng(10).random((B, S, L - 1)) > 0.5).astype(np.int32)], -1)}


@pytest.mark.parametrize("mask", list(MHA_MASKS))
@pytest.mark.parametrize("attrs", [{}, {"scale": 0.25}])
def test_multi_head_attention_masks_and_scale(mask, attrs):
    m = MHA_MASKS[mask]
    model = mha_model(None if m is None else m.shape, **attrs)
    assert_expansion_matches(model, MHA_FEEDS if m is None else {**MHA_FEEDS, "mask": m})


def test_multi_head_attention_unidirectional_self_attention_without_bias():
    feeds = {"q": MHA_FEEDS["q"], "k": rand((B, S, D), 11), "v": rand((B, S, 6), 12)}
    model = mha_model(bias=False, v_hidden=6, unidirectional=1)
    model.graph.input[1].CopyFrom(vi("k", [B, S, D]))
    model.graph.input[2].CopyFrom(vi("v", [B, S, 6]))
    assert_expansion_matches(model, feeds)


def test_multi_head_attention_packed_and_cached_forms_are_refused():
    packed = mha_model()
    packed.graph.input[0].CopyFrom(vi("q", [B, S, N, 3, D // N]))
    with pytest.raises(UnsupportedOp, match=r"'mha'.*packed"):
        expand_contrib_ops(packed)
    cached = _with(mha_model(), inputs=["q", "k", "v", "b", "", "", "past_k", "past_v"])
    with pytest.raises(UnsupportedOp, match=r"'mha'.*past key"):
        expand_contrib_ops(cached)


# --- normalisation -----------------------------------------------------------------------
def skip_norm_model(op, beta=True, bias=True, sum_output=False, mean_output=False, domain=MS):
    simplified = op == "SkipSimplifiedLayerNormalization"
    inputs = ["x", "skip", "gamma"] + ([] if simplified else ["beta" if beta else ""]) + (["bias"] if bias else [])
    inits = {"gamma": rand((D,), 13, 0.5) + 1, "beta": rand((D,), 14), "bias": rand((D,), 15)}
    outputs = ["y", "mean" if mean_output else "", "", "sum" if sum_output else ""]
    while outputs[-1] == "":
        outputs.pop()
    node = helper.make_node(op, inputs, outputs, name="norm", domain=domain, epsilon=1e-6)
    graph_out = [vi(t, [B, S, D] if t != "mean" else [B, S, 1]) for t in outputs if t]
    return contrib_model(node, [vi("x", [B, S, D]), vi("skip", [B, S, D])], graph_out,
                         {k: v for k, v in inits.items() if k in inputs})


SKIP_FEEDS = {"x": rand((B, S, D), 16, 2.0), "skip": rand((B, S, D), 17)}


@pytest.mark.parametrize("op", ["SkipLayerNormalization", "SkipSimplifiedLayerNormalization"])
@pytest.mark.parametrize("beta,bias,sum_output", [(True, True, False), (False, False, False), (True, True, True)])
def test_skip_layer_normalization(op, beta, bias, sum_output):
    assert_expansion_matches(skip_norm_model(op, beta, bias, sum_output), SKIP_FEEDS, atol=2e-6)


def test_skip_layer_normalization_statistics_outputs_are_refused():
    with pytest.raises(UnsupportedOp, match=r"'norm'.*mean / inverse standard deviation"):
        expand_contrib_ops(skip_norm_model("SkipLayerNormalization", mean_output=True))


def test_simplified_layer_normalization_in_the_default_domain():
    node = helper.make_node("SimplifiedLayerNormalization", ["x", "gamma"], ["y"], name="rms", epsilon=1e-6, axis=-1)
    model = contrib_model(node, [vi("x", [B, S, D])], [vi("y", [B, S, D])], {"gamma": rand((D,), 18) + 1})
    assert_expansion_matches(model, {"x": SKIP_FEEDS["x"]}, atol=2e-6)


@pytest.mark.parametrize("segments,position_ids,sum_output", [(True, False, False), (False, False, True),
                                                               (True, True, True)])
def test_embed_layer_normalization(segments, position_ids, sum_output):
    """BERT's embeddings; the mask index (lengths) from a mask with a hole, as the kernel counts it."""
    vocab, max_len = 11, 9
    inputs = ["ids", "seg" if segments else "", "word", "pos", "segtab" if segments else "", "gamma", "beta",
              "mask", "posids" if position_ids else ""]
    outputs = ["y", "mask_index"] + (["sum"] if sum_output else [])
    node = helper.make_node("EmbedLayerNormalization", inputs, outputs, name="emb", domain=MS, epsilon=1e-5)
    graph_inputs = [vi("ids", [B, S], TensorProto.INT32), vi("mask", [B, S], TensorProto.INT32)]
    graph_inputs += [vi("seg", [B, S], TensorProto.INT32)] if segments else []
    graph_inputs += [vi("posids", [1, S], TensorProto.INT32)] if position_ids else []
    graph_out = [vi("y", [B, S, D]), vi("mask_index", [B], TensorProto.INT32)] + (
        [vi("sum", [B, S, D])] if sum_output else [])
    inits = {"word": rand((vocab, D), 21), "pos": rand((max_len, D), 22), "segtab": rand((2, D), 23),
             "gamma": rand((D,), 24) + 1, "beta": rand((D,), 25)}
    model = contrib_model(node, graph_inputs, graph_out, {k: v for k, v in inits.items() if k in inputs})
    rng = np.random.default_rng(26)
    feeds = {"ids": rng.integers(0, vocab, (B, S)).astype(np.int32),
             "mask": np.array([[1, 1, 1, 0, 0], [1, 0, 1, 1, 0]], np.int32)}
    feeds |= {"seg": rng.integers(0, 2, (B, S)).astype(np.int32)} if segments else {}
    feeds |= {"posids": np.array([[3, 1, 4, 1, 5]], np.int32)} if position_ids else {}
    assert_expansion_matches(model, feeds, atol=2e-6)


# --- activations -------------------------------------------------------------------------
@pytest.mark.parametrize("op,inputs,attrs", [
    ("Gelu", ["x"], {}), ("BiasGelu", ["x", "bias"], {}), ("FastGelu", ["x"], {}),
    ("FastGelu", ["x", "bias"], {}), ("QuickGelu", ["x"], {}), ("QuickGelu", ["x"], {"alpha": 1.3}),
])
def test_activations(op, inputs, attrs):
    node = helper.make_node(op, inputs, ["y"], name="act", domain=MS, **attrs)
    graph_inputs = [vi("x", [B, S, D])] + ([vi("skip", [B, S, D])] if "skip" in inputs else [])
    model = contrib_model(node, graph_inputs, [vi("y", [B, S, D])], {"bias": rand((D,), 19)} if "bias" in inputs else {})
    feeds = {"x": rand((B, S, D), 20, 3.0)} | ({"skip": SKIP_FEEDS["skip"]} if "skip" in inputs else {})
    assert_expansion_matches(model, feeds, atol=2e-6)


def test_bias_add():
    """BiasAdd (diffusion UNets) has a CUDA kernel only: checked against its definition."""
    node = helper.make_node("BiasAdd", ["x", "bias", "skip"], ["y"], name="act", domain=MS)
    bias = rand((D,), 19)
    model = contrib_model(node, [vi("x", [B, S, D]), vi("skip", [B, S, D])], [vi("y", [B, S, D])], {"bias": bias})
    x = rand((B, S, D), 20)
    got = run(expand_contrib_ops(model), {"x": x, "skip": SKIP_FEEDS["skip"]})["y"]
    np.testing.assert_allclose(got, (x + bias) + SKIP_FEEDS["skip"], rtol=1e-6)


def test_fused_op_without_expansion_is_refused_by_name():
    node = helper.make_node("GroupQueryAttention", ["q", "k", "v"], ["y"], name="gqa", domain=MS, num_heads=2,
                            kv_num_heads=1)
    model = contrib_model(node, [vi(t, [B, S, D]) for t in "qkv"], [vi("y", [B, S, D])])
    with pytest.raises(UnsupportedOp, match=r"node 'gqa' \(op type 'GroupQueryAttention'.*no expansion.*unfused"):
        expand_contrib_ops(model)


def test_model_without_fused_ops_is_returned_unchanged():
    node = helper.make_node("Relu", ["x"], ["y"], name="relu")
    model = contrib_model(node, [vi("x", [B, S, D])], [vi("y", [B, S, D])])
    assert expand_contrib_ops(model) is model
