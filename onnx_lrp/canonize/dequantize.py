"""Quantized weights (``DequantizeLinear`` of integer constants, the QDQ form) become float constants.

onnxruntime's quantizer stores each weight and bias as an integer initializer read through a
``DequantizeLinear`` node; the rules need the float weight the model computes with, so it is
computed here, in numpy: ``(q - zero_point) * scale``, per tensor or along ``axis`` per channel.
Activation ``QuantizeLinear``/``DequantizeLinear`` pairs stay in the graph (see
:mod:`onnx_lrp.ops.quantize`).
"""
from __future__ import annotations

import numpy as np
import onnx

from ..errors import UnsupportedOp
from ._edit import attr, copy_model, drop_unused_initializers
from .editor import GraphEditor


def dequantize_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace every ``DequantizeLinear`` whose inputs are all constants by its float value."""
    model = copy_model(model)
    edit = GraphEditor(model)
    changed = False
    for node in edit.nodes():
        if node.op_type != "DequantizeLinear" or node.domain not in ("", "ai.onnx", "com.microsoft"):
            continue
        values = [edit.const(t) if t else None for t in node.input]
        if values[0] is None or values[1] is None or (len(values) > 2 and node.input[2] and values[2] is None):
            continue  # an activation's fake quantization: kept
        edit.remove(node)
        edit.set_const(node.output[0], dequantize(node, *values[:3]))
        changed = True
    if not changed:
        return model
    model = edit.commit()
    drop_unused_initializers(model)
    return model


def dequantize(node: onnx.NodeProto, q: np.ndarray, scale: np.ndarray, zero_point=None) -> np.ndarray:
    """``(q - zero_point) * scale`` broadcast along ``axis`` (float32, or the scale's float type)."""
    if attr(node, "block_size", 0):
        raise UnsupportedOp(f"node {node.name!r} (DequantizeLinear) uses blocked quantization (block_size); "
                            "onnx-lrp dequantizes per-tensor and per-axis weights only: quantize per channel")
    if q.dtype.kind not in "iu":
        raise UnsupportedOp(f"node {node.name!r} (DequantizeLinear) reads {q.dtype} data; onnx-lrp dequantizes "
                            "int8/uint8/int16/uint16/int32 weights")
    scale = np.asarray(scale)
    zero = np.zeros((), np.int64) if zero_point is None else np.asarray(zero_point)
    if scale.ndim == 1 and q.ndim > 0:  # per axis: the scale runs along ``axis`` of q
        shape = [1] * q.ndim
        shape[int(attr(node, "axis", 1)) % q.ndim] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape if zero.size == scale.size else ())
    dtype = scale.dtype if np.issubdtype(scale.dtype, np.floating) else np.float32
    return ((q.astype(np.int64) - zero.astype(np.int64)) * scale.astype(np.float64)).astype(dtype)
