"""Fuse ``Add(linear(x), const)`` into the linear op's bias.

Exporters often emit MatMul + Add for a dense layer, and some emit Conv (or ConvTranspose) + Add.
One linear op with a bias is what the LRP rules are defined on (ZPlus, Gamma and AlphaBeta split
the bias by sign), so the pair becomes a Conv/ConvTranspose with bias or a Gemm.
"""
from __future__ import annotations

import numpy as np
import onnx

from ._edit import (channel_bias, copy_model, drop_unused_initializers, out_channels, set_attr, set_bias,
                    weighted)
from .editor import GraphEditor


def fuse_bias(model: onnx.ModelProto, ranks: dict[str, int] | None = None) -> onnx.ModelProto:
    """``ranks`` (tensor name -> rank) lets a 2-D MatMul + Add become a Gemm."""
    model = copy_model(model)
    edit = GraphEditor(model)
    ranks = ranks or {}
    for node in edit.nodes():
        if node.op_type == "Add" and _fuse(edit, node, ranks):
            # removed at once, so a second constant Add after it sees the linear op as its producer
            edit.remove(node)
    model = edit.commit()
    drop_unused_initializers(model)  # the added constants and replaced biases
    return model


def _fuse(edit, add, ranks) -> bool:
    found = _linear_and_const(edit, add)
    if found is None:
        return False
    linear, const = found
    channels = out_channels(edit, linear)
    bias = _as_channel_bias(edit, const, channels, linear, ranks)
    if bias is None:
        return False
    existing = channel_bias(edit, linear, channels)
    if existing is None:
        return False
    if linear.op_type == "MatMul":
        linear.op_type = "Gemm"
    _set_bias(edit, linear, bias + existing)
    # the Add was the linear output's only reader: the linear op takes over the Add's output name
    edit.set_output(linear, 0, add.output[0])
    return True


def _linear_and_const(edit, add):
    for lin_idx in (0, 1):
        linear = edit.producer(add.input[lin_idx])
        if weighted(linear) is None:
            continue
        const = edit.const(add.input[1 - lin_idx])
        if const is None:
            continue
        if len(edit.consumers(linear.output[0])) != 1 or edit.is_output(linear.output[0]):
            continue
        if edit.const(linear.input[1]) is None:
            continue
        return linear, const
    return None


def _as_channel_bias(edit, const, channels, linear, ranks):
    """The constant as a per-output-channel vector, or None when it is not one."""
    if channels is None:
        return None
    if weighted(linear).output_channel_axis == 1:  # NCHW convolutions; dense layers: the last axis
        rank = edit.const(linear.input[1]).ndim
        if const.ndim > rank:
            return None
        shape = (1,) * (rank - const.ndim) + const.shape
        if any(d != 1 for i, d in enumerate(shape) if i != 1) or shape[1] not in (1, channels):
            return None
    else:
        if linear.op_type == "MatMul" and (ranks.get(linear.input[0]) != 2):
            return None
        if const.ndim > 2 or (const.ndim == 2 and const.shape[0] != 1):
            return None
        if const.size not in (1, channels):
            return None
    return np.broadcast_to(const.reshape(-1), (channels,)).astype(np.float64)


def _set_bias(edit, linear, bias) -> None:
    if linear.op_type == "Gemm":
        set_attr(linear, "beta", 1.0)
    set_bias(edit, linear, bias, linear.name + "_bias")

