"""Fold ``Mul``/``Div`` by a per-output-channel constant (and ``Sub`` of one) into the linear op
before it: a BatchNormalization that an exporter wrote out as ``Mul(scale)`` then ``Add(shift)``.

``Conv → Mul(s) → Add(t)`` becomes one Conv with weight ``s·W`` and bias ``s·b + t`` (the
``Add`` through :func:`fuse_bias`), as :func:`fold_batchnorm` does for the BatchNormalization
op and Zennit's ``MergeBatchNorm`` for the module. :func:`fold_linear_affine` alternates the two
passes until nothing changes, so any chain of constant scales and shifts after a Conv, Gemm or
2-D MatMul ends up in its weight and bias.
"""
from __future__ import annotations

import numpy as np
import onnx

from ._edit import attr, channel_bias, copy_model, drop_unused_initializers, out_channels, set_bias, weighted
from .editor import GraphEditor
from .fuse_bias import fuse_bias



def fold_linear_affine(model: onnx.ModelProto, ranks: dict[str, int] | None = None) -> onnx.ModelProto:
    """Scale folding and bias fusion, repeated until the graph stops shrinking."""
    while True:
        before = len(model.graph.node)
        model = fuse_bias(fold_scale(model), ranks)
        if len(model.graph.node) == before:
            return model


def fold_scale(model: onnx.ModelProto) -> onnx.ModelProto:
    model = copy_model(model)
    edit = GraphEditor(model)
    for node in edit.nodes():
        if node.op_type in ("Mul", "Div", "Sub") and _fold(edit, node):
            edit.remove(node)
    model = edit.commit()
    drop_unused_initializers(model)
    return model


def _fold(edit, node) -> bool:
    found = _linear_operand(edit, node)
    if found is None:
        return False
    linear, const = found
    channels = out_channels(edit, linear)
    per_channel = _per_channel(edit, linear, const, channels)
    if per_channel is None:
        return False
    weight = edit.const(linear.input[1]).astype(np.float64)
    if linear.op_type == "Gemm":
        weight = weight * attr(linear, "alpha", 1.0)
    usable, bias = _bias(edit, linear, channels)
    if not usable:
        return False
    if node.op_type == "Sub":
        if linear.op_type == "MatMul":
            return False  # no bias input to take the shift; fuse_bias handles Add only
        _set(edit, linear, weight, bias - per_channel)
    else:
        scale = per_channel if node.op_type == "Mul" else 1.0 / per_channel
        if not np.all(np.isfinite(scale)):
            return False
        _set(edit, linear, _scale_weight(linear, weight, scale), None if bias is None else bias * scale)
    _take_output(edit, linear, node)
    return True


def _linear_operand(edit, node):
    """(linear producer, constant operand) when ``node`` is ``linear(x) ∘ const`` (for Div and Sub
    only with the linear op first)."""
    for idx in ((0,) if node.op_type in ("Div", "Sub") else (0, 1)):
        linear = edit.producer(node.input[idx])
        if weighted(linear) is None:
            continue
        const = edit.const(node.input[1 - idx])
        if const is None:
            continue
        if len(edit.consumers(linear.output[0])) != 1 or edit.is_output(linear.output[0]):
            continue
        if edit.const(linear.input[1]) is None:
            continue
        if len(linear.input) > 2 and linear.input[2] and edit.const(linear.input[2]) is None:
            continue
        if linear.op_type == "MatMul" and edit.const(linear.input[1]).ndim != 2:
            continue
        if linear.op_type == "Gemm" and attr(linear, "transA", 0):
            continue
        return linear, const
    return None


def _per_channel(edit, linear, const, channels) -> np.ndarray | None:
    """The constant as one value per output channel, or None when it varies along other axes.

    Conv/ConvTranspose outputs have channels on axis 1 (constant shaped (C,1,...) or
    (1,C,1,...)); Gemm/MatMul on the last axis (shape (C,) or (1,...,C))."""
    const = np.asarray(const, np.float64)
    if const.size == 1:
        return np.full(channels, float(const.reshape(-1)[0]))
    if weighted(linear).output_channel_axis == 1:  # NCHW convolutions; dense layers: the last axis
        rank = edit.const(linear.input[1]).ndim
        if const.ndim > rank or const.ndim < 2:
            return None  # a 1-D constant broadcasts along the last spatial axis, not the channels
        shape = (1,) * (rank - const.ndim) + const.shape
        if shape[1] != channels or any(d != 1 for i, d in enumerate(shape) if i != 1):
            return None
    elif const.shape[-1] != channels or any(d != 1 for d in const.shape[:-1]):
        return None
    return const.reshape(-1)


def _bias(edit, linear, channels) -> tuple[bool, np.ndarray | None]:
    """(usable, bias per channel); a MatMul has none, a per-sample Gemm C is not usable."""
    if weighted(linear).bias_input is None:
        return True, None
    bias = channel_bias(edit, linear, channels)
    return (False, None) if bias is None else (True, bias.copy())


def _scale_weight(linear, weight, scale):
    return weighted(linear).scale_output_channels(linear, weight, scale)


def _set(edit, linear, weight, bias) -> None:
    """New weight (and bias); a Gemm's alpha and beta are folded into them."""
    if linear.op_type == "Gemm":
        for a in list(linear.attribute):
            if a.name in ("alpha", "beta"):
                linear.attribute.remove(a)
    w_name = edit.fresh(linear.input[1] + "_scaled")
    edit.set_const(w_name, weight.astype(np.float32))
    edit.set_input(linear, 1, w_name)
    if bias is None:
        return
    set_bias(edit, linear, bias, linear.input[1] + "_bias")


def _take_output(edit, linear, node) -> None:
    """The linear op writes the folded node's output, so downstream names are unchanged."""
    old = linear.output[0]
    edit.set_output(linear, 0, node.output[0])
    edit.rename_uses(old, node.output[0])
