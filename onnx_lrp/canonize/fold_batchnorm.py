"""Fold an inference BatchNormalization into the Conv/ConvTranspose/Gemm that feeds it.

Zennit's canonizers do the same (``MergeBatchNorm``): the folded linear op then gets the
composite's rule, and the BN no longer needs a rule of its own.
"""
from __future__ import annotations

import numpy as np
import onnx

from ._edit import attr, copy_model, drop_unused_initializers, set_attr, weighted
from .editor import GraphEditor



def fold_batchnorm(model: onnx.ModelProto) -> onnx.ModelProto:
    model = copy_model(model)
    edit = GraphEditor(model)
    folded = []
    for bn in edit.nodes():
        if bn.op_type != "BatchNormalization" or len([o for o in bn.output if o]) != 1:
            continue
        if attr(bn, "training_mode", 0):
            continue  # normalises with batch statistics: not a fixed affine map
        linear = _foldable_producer(edit, bn)
        if linear is None:
            continue
        scale, shift = _bn_affine(edit, bn)
        if scale is None:
            continue
        _scale_linear(edit, linear, scale, shift)
        folded.append((bn, linear))
    # applied after the matching, so a BN reading a folded BN still sees a BN as its producer
    for bn, linear in folded:
        edit.remove(bn)
        # the linear op's output had the BN as its only reader, so it can simply take over the
        # BN's output name; downstream nodes and graph outputs stay as they are
        edit.set_output(linear, 0, bn.output[0])
    model = edit.commit()
    drop_unused_initializers(model)  # the unscaled weights and BN statistics
    return model


def _foldable_producer(edit, bn):
    linear = edit.producer(bn.input[0])
    if weighted(linear, with_bias=True) is None:
        return None
    if len(edit.consumers(linear.output[0])) != 1 or edit.is_output(linear.output[0]):
        return None
    if edit.const(linear.input[1]) is None:
        return None
    if len(linear.input) > 2 and linear.input[2]:
        bias = edit.const(linear.input[2])
        if bias is None or not _per_channel(linear, bias):
            return None
    return linear


def _per_channel(linear, bias) -> bool:
    """Gemm's C may broadcast over rows ((M, N) or (N, 1)); only a row vector or scalar is a bias."""
    if linear.op_type != "Gemm":
        return True
    return bias.ndim <= 1 or (bias.ndim == 2 and bias.shape[0] == 1)


def _bn_affine(edit, bn):
    """y = scale * x + shift, per channel."""
    gamma, beta, mean, var = (edit.const(t) for t in bn.input[1:5])
    if any(v is None for v in (gamma, beta, mean, var)):
        return None, None
    eps = attr(bn, "epsilon", 1e-5)
    scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
    return scale, beta - mean * scale


def _scale_linear(edit, node, scale, shift) -> None:
    weight = edit.const(node.input[1]).astype(np.float64)
    bias = _bias(edit, node, len(scale))
    weight = weighted(node).scale_output_channels(node, weight, scale)
    _set_params(edit, node, weight, bias * scale + shift)


def _bias(edit, node, channels) -> np.ndarray:
    if len(node.input) > 2 and node.input[2]:
        b = edit.const(node.input[2]).astype(np.float64)
        if node.op_type == "Gemm":
            b = b * attr(node, "beta", 1.0)
        return np.broadcast_to(b.reshape(-1) if b.size == channels else b, (channels,)).copy()
    return np.zeros(channels)


def _set_params(edit, node, weight, bias) -> None:
    w_name = edit.fresh(node.input[1] + "_bnfold")
    b_name = edit.fresh(node.input[1] + "_bnfold_bias")
    edit.set_const(w_name, weight.astype(np.float32))
    edit.set_const(b_name, bias.astype(np.float32))
    edit.set_input(node, 1, w_name)
    if node.op_type == "Gemm":
        set_attr(node, "beta", 1.0)  # beta is folded into the new C (and scaled a C that was absent)
    edit.set_input(node, min(2, len(node.input)), b_name)

