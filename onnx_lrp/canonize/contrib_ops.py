"""onnxruntime's fused transformer ops (``com.microsoft``) become the standard ONNX ops they fuse.

``onnxruntime.transformers.optimizer`` (and onnxruntime's own graph optimizations, saved with the
model) rewrites an exported transformer into contrib ops: ``Attention`` / ``MultiHeadAttention``
for the whole scaled dot-product attention, ``SkipLayerNormalization`` for residual sum plus
LayerNorm, ``BiasGelu`` / ``FastGelu`` / ``Gelu`` for the MLP's activation, and so on. No rule is
defined on these: relevance has to know the bilinear products, the softmax and the normalisation
inside them. This pass writes each one back as the graph an exporter writes for the same layer
(separate Q/K/V projections, ``MatMul``/``Softmax``/``MatMul`` heads, ``Add`` then
``LayerNormalization``, the erf or tanh GELU), computing what onnxruntime's CPU kernel computes,
so the AttnLRP / CP-LRP rules apply unchanged: a fused model and its unfused export get the same
relevance (to float32 rounding).

Forms that are not a plain forward pass over one sequence (key/value cache, rotary embedding
inside the op, packed or quantized variants, Megatron's 4-D mask, ...) and the fused ops this pass
does not know raise :class:`~onnx_lrp.errors.UnsupportedOp` naming the node; the way out is the
unfused export (without onnxruntime's transformer optimizer).
"""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper

from ..errors import UnsupportedOp
from ._edit import attr, copy_model, drop_unused_initializers
from .editor import GraphEditor, NameAllocator

#: The advice every refusal ends with.
UNFUSED = ("export the model without onnxruntime's transformer optimizer (the unfused graph: "
           "onnxruntime.transformers.optimizer / optimize_model not applied, graph optimizations off when saving)")

#: Fused ops of the ``com.microsoft`` domain this pass does not expand (refused by name).
_KNOWN_UNSUPPORTED = {
    "GroupQueryAttention", "PackedAttention", "PackedMultiHeadAttention", "DecoderAttention",
    "DecoderMaskedSelfAttention", "DecoderMaskedMultiHeadAttention", "LongformerAttention", "SparseAttention",
    "QAttention", "QOrderedAttention", "QOrderedLayerNormalization", "QOrderedGelu", "QOrderedMatMul",
    "RotaryEmbedding", "RelativePositionBias", "GatedRelativePositionBias", "GemmFastGelu", "BiasSplitGelu",
    "BiasSoftmax", "BiasDropout", "BitmaskBiasDropout", "SkipGroupNorm", "GroupNorm", "MatMulNBits",
    "MatMulBnb4", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "FusedMatMul", "FusedConv", "FusedGemm",
    "QEmbedLayerNormalization", "RemovePadding", "RestorePadding", "MoE", "QMoE",
}


def expand_contrib_ops(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with every fused ``com.microsoft`` transformer op written as standard ONNX ops.

    Raises
    ------
    UnsupportedOp
        For a fused op, or a form of one (past state, rotary, packed QKV, ...), that has no
        expansion here; the message names the node and says to use the unfused export.
    """
    if not any(_is_fused(n) for n in model.graph.node):
        return model
    model = copy_model(model)
    names = NameAllocator(n.name for n in model.graph.node)
    # elementwise ops and norms first: they need no shapes. Then the attention ops one at a time,
    # each with shapes inferred on the graph expanded so far (ONNX shape inference knows no
    # contrib op, so a shape behind one is unknown until it is expanded)
    model = _expand(model, names, lambda n: n.op_type not in _ATTENTION)
    while True:
        model = _expand(model, names, lambda n: True, first_only=True)
        if not any(_is_fused(n) for n in model.graph.node):
            break
    drop_unused_initializers(model)
    keep = [o for o in model.opset_import if o.domain != "com.microsoft"
            or any(n.domain == "com.microsoft" for n in model.graph.node)]
    del model.opset_import[:]
    model.opset_import.extend(keep)
    return model


def _expand(model: onnx.ModelProto, names: NameAllocator, wanted, first_only: bool = False) -> onnx.ModelProto:
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    shapes = _infer_shapes(model) if first_only else {}
    edit = GraphEditor(model)
    for node in edit.nodes():
        if not _is_fused(node) or not wanted(node):
            continue
        expand = _EXPANSIONS.get(node.op_type)
        if expand is None:
            raise _refuse(node, "onnx-lrp has no expansion of this fused op")
        emit = _Emitter(edit, node, names, opset, shapes)
        expand(emit, node)
        edit.remove(node)
        edit.insert_before(node, emit.nodes)
        if first_only:
            break
    return edit.commit()


def _infer_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, list]]:
    """Tensor name -> (element type, dims with None where unknown), from ONNX shape inference."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        inferred = model
    out = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        t = vi.type.tensor_type
        if t.HasField("shape"):
            out[vi.name] = (t.elem_type, [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim])
    return out


def _is_fused(node: onnx.NodeProto) -> bool:
    if node.domain == "com.microsoft":
        return node.op_type in _EXPANSIONS or node.op_type in _KNOWN_UNSUPPORTED
    # onnxruntime registers SimplifiedLayerNormalization in the default domain
    return node.domain in ("", "ai.onnx") and node.op_type == "SimplifiedLayerNormalization"


def _refuse(node: onnx.NodeProto, why: str) -> UnsupportedOp:
    return UnsupportedOp(f"node {node.name!r} (op type {node.op_type!r}, onnxruntime's fused op): {why}; {UNFUSED}")


class _Emitter:
    """Writes the replacement nodes of one fused node: fresh tensor and node names derived from
    its name, constants as initializers; :meth:`op` with ``out`` names the node's real output."""

    def __init__(self, edit: GraphEditor, node: onnx.NodeProto, names: NameAllocator, opset: int, shapes: dict):
        self.edit, self.node, self.names, self.opset, self.shapes = edit, node, names, opset, shapes
        self.nodes: list[onnx.NodeProto] = []

    def op(self, op_type: str, inputs, out: str | None = None, **attrs) -> str:
        base = f"{self.node.name}/{op_type}"
        out = out or self.edit.fresh(base + "_output")
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=self.names.fresh(base), **attrs))
        return out

    def const(self, value, dtype=np.float32) -> str:
        name = self.edit.fresh(f"{self.node.name}/const")
        self.edit.set_const(name, np.asarray(value, dtype))
        return name

    def ints(self, values) -> str:
        return self.const(values, np.int64)

    def reduce_mean(self, x: str, axes: list[int]) -> str:
        """ReduceMean over ``axes`` keeping them (axes an attribute before opset 18, an input from 18)."""
        if self.opset >= 18:
            return self.op("ReduceMean", [x, self.ints(axes)], keepdims=1)
        return self.op("ReduceMean", [x], axes=axes, keepdims=1)


def _input(node: onnx.NodeProto, i: int) -> str | None:
    return node.input[i] if len(node.input) > i and node.input[i] else None


def _used_outputs(emit: _Emitter, node: onnx.NodeProto) -> list[int]:
    return [i for i, t in enumerate(node.output)
            if t and (emit.edit.consumers(t) or emit.edit.is_output(t))]


def _only_outputs(emit: _Emitter, node: onnx.NodeProto, allowed: set[int], what: str) -> None:
    extra = [node.output[i] for i in _used_outputs(emit, node) if i not in allowed]
    if extra:
        raise _refuse(node, f"its output(s) {extra} ({what}) are used")


# --- activations -------------------------------------------------------------------------
def _erf_gelu(emit: _Emitter, x: str, out: str) -> str:
    """``x · 0.5 · (1 + erf(x / √2))`` as torch exports ``nn.GELU()``."""
    erf = emit.op("Erf", [emit.op("Div", [x, emit.const(math.sqrt(2.0))])])
    half_x = emit.op("Mul", [x, emit.op("Add", [erf, emit.const(1.0)])])
    return emit.op("Mul", [half_x, emit.const(0.5)], out=out)


def _tanh_gelu(emit: _Emitter, x: str, out: str) -> str:
    """``0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))`` as torch exports
    ``nn.GELU(approximate='tanh')``."""
    cube = emit.op("Pow", [x, emit.const(3.0)])
    inner = emit.op("Add", [x, emit.op("Mul", [cube, emit.const(0.044715)])])
    t = emit.op("Tanh", [emit.op("Mul", [inner, emit.const(math.sqrt(2.0 / math.pi))])])
    half_x = emit.op("Mul", [x, emit.const(0.5)])
    return emit.op("Mul", [half_x, emit.op("Add", [t, emit.const(1.0)])], out=out)


def _with_bias(emit: _Emitter, x: str, bias: str | None) -> str:
    return emit.op("Add", [x, bias]) if bias else x


def _gelu(emit, node):
    _erf_gelu(emit, node.input[0], node.output[0])


def _bias_gelu(emit, node):
    _erf_gelu(emit, _with_bias(emit, node.input[0], _input(node, 1)), node.output[0])


def _fast_gelu(emit, node):
    _tanh_gelu(emit, _with_bias(emit, node.input[0], _input(node, 1)), node.output[0])


def _quick_gelu(emit, node):
    x = node.input[0]
    alpha = attr(node, "alpha", 1.702)
    emit.op("Mul", [x, emit.op("Sigmoid", [emit.op("Mul", [x, emit.const(alpha)])])], out=node.output[0])


def _bias_add(emit, node):
    emit.op("Add", [emit.op("Add", [node.input[0], node.input[1]]), node.input[2]], out=node.output[0])


# --- normalisation -----------------------------------------------------------------------
def _skip_sum(emit: _Emitter, node: onnx.NodeProto, bias_index: int, sum_index: int) -> str:
    """``(input + bias) + skip``: the bias belongs to the dense layer that wrote ``input`` (it is
    fused into that layer later), the second Add is the residual sum, as in the unfused graph."""
    total = _with_bias(emit, node.input[0], _input(node, bias_index))
    out = node.output[sum_index] if len(node.output) > sum_index and node.output[sum_index] else None
    return emit.op("Add", [total, node.input[1]], out=out)


def _skip_layer_norm(emit, node):
    _only_outputs(emit, node, {0, 3}, "mean / inverse standard deviation")
    total = _skip_sum(emit, node, 4, 3)
    beta = [_input(node, 3)] if _input(node, 3) else []
    emit.op("LayerNormalization", [total, node.input[2]] + beta, out=node.output[0], axis=-1,
            epsilon=attr(node, "epsilon", 1e-12))


def _rms_norm(emit: _Emitter, x: str, scale: str, axes: list[int], epsilon: float, out: str) -> None:
    """``scale · x / sqrt(mean(x²) + ε)`` as torch exports an RMSNorm (Llama's)."""
    mean_square = emit.reduce_mean(emit.op("Pow", [x, emit.const(2.0)]), axes)
    std = emit.op("Sqrt", [emit.op("Add", [mean_square, emit.const(epsilon)])])
    normed = emit.op("Mul", [x, emit.op("Div", [emit.const(1.0), std])])
    emit.op("Mul", [scale, normed], out=out)


def _skip_simplified_layer_norm(emit, node):
    _only_outputs(emit, node, {0, 3}, "mean / inverse standard deviation")
    total = _skip_sum(emit, node, 3, 3)
    _rms_norm(emit, total, node.input[2], [-1], attr(node, "epsilon", 1e-12), node.output[0])


def _simplified_layer_norm(emit, node):
    _only_outputs(emit, node, {0}, "inverse standard deviation")
    axis = attr(node, "axis", -1)
    if axis != -1:
        raise _refuse(node, f"normalisation from axis {axis} (only the last axis, axis=-1, is expanded)")
    _rms_norm(emit, node.input[0], node.input[1], [-1], attr(node, "epsilon", 1e-5), node.output[0])


def _embed_layer_norm(emit, node):
    """Word + position (+ segment) embeddings, then LayerNorm, as BERT's embedding layer; the mask
    index output is the mask's per-sample count of ones, the (B) lengths Attention reads."""
    ids, segments, word, positions, segment_table = (_input(node, i) for i in range(5))
    mask, position_ids = _input(node, 7), _input(node, 8)
    if emit.edit.const(word) is None or emit.edit.const(positions) is None:
        raise _refuse(node, "its embedding tables are computed at run time")
    total = emit.op("Gather", [word, ids], axis=0)
    if position_ids is None:
        position_ids = emit.op("Unsqueeze", [_positions(emit, _scalar_dim(emit, ids, 1)), emit.ints([0])])
    total = emit.op("Add", [total, emit.op("Gather", [positions, position_ids], axis=0)])
    if segments and segment_table:
        total = emit.op("Add", [total, emit.op("Gather", [segment_table, segments], axis=0)])
    if len(node.output) > 2 and node.output[2]:
        total = emit.op("Identity", [total], out=node.output[2])
    emit.op("LayerNormalization", [total, node.input[5], node.input[6]], out=node.output[0], axis=-1,
            epsilon=attr(node, "epsilon", 1e-12))
    if 1 in _used_outputs(emit, node):
        if mask is None:
            raise _refuse(node, "its mask index output is used without a mask input")
        count = emit.op("ReduceSum", [emit.op("Cast", [mask], to=onnx.TensorProto.INT32), emit.ints([1])], keepdims=0)
        emit.op("Identity", [count], out=node.output[1])


# --- attention ---------------------------------------------------------------------------
def _heads(emit: _Emitter, x: str, num_heads: int, head_size: int, perm: list[int]) -> str:
    """(B, S, N·H) -> (B, N, S, H) (perm [0,2,1,3]) or (B, N, H, S) (perm [0,2,3,1])."""
    return emit.op("Transpose", [emit.op("Reshape", [x, emit.ints([0, 0, num_heads, head_size])])], perm=perm)


def _scalar_dim(emit: _Emitter, tensor: str, axis: int) -> str:
    """``tensor.shape[axis]`` as an int64 scalar computed at run time."""
    return emit.op("Gather", [emit.op("Shape", [tensor]), emit.ints(axis)], axis=0)


def _positions(emit: _Emitter, length: str) -> str:
    return emit.op("Range", [emit.ints(0), length, emit.ints(1)])


def _keep_mask(emit: _Emitter, mask: str, rank: int, batch: str, keys: str) -> str:
    """Bool, broadcastable to (B, N, S, T): True where a query may attend to a key, from a mask in
    one of onnxruntime's forms: (B) valid lengths (right padding), (2B) exclusive ends then
    inclusive starts (left padding), (B, T) or (B, S, T) with 0 = masked."""
    mask64 = emit.op("Cast", [mask], to=onnx.TensorProto.INT64)
    if rank > 1:
        keep = emit.op("Greater", [mask64, emit.ints(0)])
        return emit.op("Unsqueeze", [keep, emit.ints([1] if rank == 3 else [1, 2])])
    # (B) and (2B) read alike: append B zeros (start 0) and keep the first 2B values as (2, B, 1)
    batch1 = emit.op("Unsqueeze", [batch, emit.ints([0])])
    zeros = emit.op("ConstantOfShape", [batch1], value=helper.make_tensor("zero", onnx.TensorProto.INT64, [1], [0]))
    two_b = emit.op("Mul", [batch1, emit.ints([2])])
    pairs = emit.op("Slice", [emit.op("Concat", [mask64, zeros], axis=0), emit.ints([0]), two_b])
    pairs = emit.op("Reshape", [pairs, emit.ints([2, -1, 1])])
    end = emit.op("Gather", [pairs, emit.ints(0)], axis=0)
    start = emit.op("Gather", [pairs, emit.ints(1)], axis=0)
    positions = emit.op("Unsqueeze", [_positions(emit, keys), emit.ints([0])])  # (1, T)
    keep = emit.op("And", [emit.op("Less", [positions, end]), emit.op("GreaterOrEqual", [positions, start])])
    return emit.op("Unsqueeze", [keep, emit.ints([1, 2])])  # (B, 1, 1, T)


def _causal(emit: _Emitter, queries: str, keys: str) -> str:
    """Bool (S, T): query s attends to keys t <= s."""
    rows = emit.op("Unsqueeze", [_positions(emit, queries), emit.ints([1])])
    cols = emit.op("Unsqueeze", [_positions(emit, keys), emit.ints([0])])
    return emit.op("LessOrEqual", [cols, rows])


def _shape(emit: _Emitter, tensor: str) -> list | None:
    """Dims of ``tensor`` (ints, or None where unknown), None when even the rank is unknown."""
    init = emit.edit.const(tensor)
    if init is not None:
        return list(init.shape)
    known = emit.shapes.get(tensor)
    return None if known is None else known[1]


def _attention_core(emit: _Emitter, node: onnx.NodeProto, q: str, k: str, v: str, num_heads: int,
                    qk_head: int, v_head: int, mask: str | None, bias: str | None) -> None:
    """softmax(scale · Q Kᵀ + mask + bias) V over heads, written to ``node.output[0]`` as (B, S, N·Hv),
    with onnxruntime's CPU kernel's masking: masked scores get ``mask_filter_value`` added."""
    qh = _heads(emit, q, num_heads, qk_head, [0, 2, 1, 3])
    kt = _heads(emit, k, num_heads, qk_head, [0, 2, 3, 1])
    vh = _heads(emit, v, num_heads, v_head, [0, 2, 1, 3])
    scale = attr(node, "scale", 0.0) or 1.0 / math.sqrt(qk_head)
    scores = emit.op("Mul", [emit.op("MatMul", [qh, kt]), emit.const(np.float32(scale))])
    keep = None
    if mask is not None:
        shape = _shape(emit, mask)
        if shape is None:
            raise _refuse(node, f"the rank of its mask {mask!r} is unknown")
        if len(shape) == 4:
            raise _refuse(node, "a 4-D (Megatron) mask")
        if len(shape) not in (1, 2, 3):
            raise _refuse(node, f"a mask of rank {len(shape)}")
        query = _shape(emit, node.input[0])  # (B, S, D) for both ops
        batch = query[0] if query else None
        if len(shape) == 1 and shape[0] is not None and batch is not None and shape[0] not in (batch, 2 * batch):
            raise _refuse(node, f"a mask of shape {shape} (the (3·B + 2) form of packed sequences)")
        keep = _keep_mask(emit, mask, len(shape), _scalar_dim(emit, q, 0), _scalar_dim(emit, k, 1))
    filter_value = emit.const(attr(node, "mask_filter_value", -10000.0))
    if keep is not None:
        scores = emit.op("Add", [scores, emit.op("Where", [keep, emit.const(0.0), filter_value])])
    if attr(node, "unidirectional", 0):
        # the kernel adds the lowest float to future keys on top of the mask: a row the mask
        # hides completely still attends to its past (all its scores moved by the same amount)
        causal = _causal(emit, _scalar_dim(emit, q, 1), _scalar_dim(emit, k, 1))
        lowest = emit.const(np.finfo(np.float32).min)
        scores = emit.op("Add", [scores, emit.op("Where", [causal, emit.const(0.0), lowest])])
    if bias is not None:
        scores = emit.op("Add", [scores, bias])
    probs = emit.op("Softmax", [scores], axis=-1)
    context = emit.op("Transpose", [emit.op("MatMul", [probs, vh])], perm=[0, 2, 1, 3])
    emit.op("Reshape", [context, emit.ints([0, 0, num_heads * v_head])], out=node.output[0])


def _attention(emit, node):
    for i, what in ((4, "past state (key/value cache)"), (6, "past_sequence_length (shared key/value buffer)")):
        if _input(node, i):
            raise _refuse(node, f"it reads {what}")
    _only_outputs(emit, node, {0}, "present state (key/value cache)")
    if attr(node, "do_rotary", 0):
        raise _refuse(node, "it applies rotary position embeddings inside the op (do_rotary=1)")
    if attr(node, "past_present_share_buffer", 0):
        raise _refuse(node, "past_present_share_buffer=1 (a key/value cache)")
    weights = emit.edit.const(node.input[1])
    if weights is None or weights.ndim != 2:
        raise _refuse(node, "its Q/K/V weights are not a constant matrix")
    num_heads = attr(node, "num_heads")
    sizes = list(attr(node, "qkv_hidden_sizes", []) or [weights.shape[1] // 3] * 3)
    if len(sizes) != 3 or sum(sizes) != weights.shape[1] or sizes[0] != sizes[1] or \
            any(s % num_heads for s in sizes):
        raise _refuse(node, f"qkv_hidden_sizes {sizes} do not fit its weights {list(weights.shape)} and "
                            f"{num_heads} heads")
    bias = emit.edit.const(node.input[2]) if _input(node, 2) else None
    if _input(node, 2) and bias is None:
        raise _refuse(node, "its Q/K/V bias is computed at run time")
    x = node.input[0]
    projected, start = [], 0
    for size in sizes:  # three dense layers, as an exporter writes them
        out = emit.op("MatMul", [x, emit.const(weights[:, start:start + size], weights.dtype)])
        if bias is not None:
            out = emit.op("Add", [out, emit.const(bias[start:start + size], bias.dtype)])
        projected.append(out)
        start += size
    _attention_core(emit, node, *projected, num_heads, sizes[0] // num_heads, sizes[2] // num_heads,
                    _input(node, 3), _input(node, 5))


def _multi_head_attention(emit, node):
    for i, what in ((6, "past key"), (7, "past value"), (8, "past_sequence_length"), (9, "cache_indirection")):
        if _input(node, i):
            raise _refuse(node, f"it reads {what} (a key/value cache)")
    _only_outputs(emit, node, {0}, "present key / value or QK")
    q, k, v = (_input(node, i) for i in range(3))
    shapes = [_shape(emit, t) if t else None for t in (q, k, v)]
    if k is None or v is None or any(s is None or len(s) != 3 for s in shapes):
        raise _refuse(node, "packed QKV / KV, or key and value given per head (only 3-D query, key and value, "
                            "(batch, sequence, hidden), are expanded)")
    num_heads = attr(node, "num_heads")
    hidden, v_hidden = shapes[0][2], shapes[2][2]
    if not hidden or not v_hidden or hidden % num_heads or v_hidden % num_heads:
        raise _refuse(node, f"hidden sizes {hidden}, {v_hidden} unknown or not divisible by {num_heads} heads")
    bias_name = _input(node, 3)
    if bias_name:
        bias = emit.edit.const(bias_name)
        if bias is None:
            raise _refuse(node, "its bias is computed at run time")
        bounds = [0, hidden, 2 * hidden, 2 * hidden + v_hidden]
        q, k, v = (emit.op("Add", [t, emit.const(bias[bounds[i]:bounds[i + 1]], bias.dtype)])
                   for i, t in enumerate((q, k, v)))
    _attention_core(emit, node, q, k, v, num_heads, hidden // num_heads, v_hidden // num_heads,
                    _input(node, 4), _input(node, 5))


#: Expanded one at a time, with shapes inferred on the graph expanded so far.
_ATTENTION = {"Attention", "MultiHeadAttention"}

_EXPANSIONS = {
    "Attention": _attention,
    "MultiHeadAttention": _multi_head_attention,
    "SkipLayerNormalization": _skip_layer_norm,
    "SkipSimplifiedLayerNormalization": _skip_simplified_layer_norm,
    "SimplifiedLayerNormalization": _simplified_layer_norm,
    "EmbedLayerNormalization": _embed_layer_norm,
    "Gelu": _gelu,
    "BiasGelu": _bias_gelu,
    "FastGelu": _fast_gelu,
    "QuickGelu": _quick_gelu,
    "BiasAdd": _bias_add,
}
