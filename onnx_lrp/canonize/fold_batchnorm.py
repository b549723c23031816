"""Fold an inference BatchNormalization into the Conv/ConvTranspose/Gemm that feeds it.

Zennit's canonizers do the same (``MergeBatchNorm``): the folded linear op then gets the
composite's rule, and the BN no longer needs a rule of its own.
"""
from __future__ import annotations

import numpy as np
import onnx

from ._edit import (attr, consumers, copy_model, drop_unused_initializers, get_const, graph_outputs,
                    producers, remove_nodes, set_attr, set_initializer, unique_name)

_LINEAR = ("Conv", "ConvTranspose", "Gemm")


def fold_batchnorm(model: onnx.ModelProto) -> onnx.ModelProto:
    model = copy_model(model)
    doomed = []
    for bn in list(model.graph.node):
        if bn.op_type != "BatchNormalization" or len([o for o in bn.output if o]) != 1:
            continue
        if attr(bn, "training_mode", 0):
            continue  # normalises with batch statistics: not a fixed affine map
        linear = _foldable_producer(model, bn)
        if linear is None:
            continue
        scale, shift = _bn_affine(model, bn)
        if scale is None:
            continue
        _scale_linear(model, linear, scale, shift)
        # the linear op's output had the BN as its only reader, so it can simply take over the
        # BN's output name; downstream nodes and graph outputs stay as they are
        linear.output[0] = bn.output[0]
        doomed.append(bn)
    remove_nodes(model, doomed)
    drop_unused_initializers(model)  # the unscaled weights and BN statistics
    return model


def _foldable_producer(model, bn):
    linear = producers(model).get(bn.input[0])
    if linear is None or linear.op_type not in _LINEAR:
        return None
    if len(consumers(model).get(linear.output[0], [])) != 1 or linear.output[0] in graph_outputs(model):
        return None
    if get_const(model, linear.input[1]) is None:
        return None
    if len(linear.input) > 2 and linear.input[2]:
        bias = get_const(model, linear.input[2])
        if bias is None or not _per_channel(linear, bias):
            return None
    return linear


def _per_channel(linear, bias) -> bool:
    """Gemm's C may broadcast over rows ((M, N) or (N, 1)); only a row vector or scalar is a bias."""
    if linear.op_type != "Gemm":
        return True
    return bias.ndim <= 1 or (bias.ndim == 2 and bias.shape[0] == 1)


def _bn_affine(model, bn):
    """y = scale * x + shift, per channel."""
    gamma, beta, mean, var = (get_const(model, t) for t in bn.input[1:5])
    if any(v is None for v in (gamma, beta, mean, var)):
        return None, None
    eps = attr(bn, "epsilon", 1e-5)
    scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
    return scale, beta - mean * scale


def _scale_linear(model, node, scale, shift) -> None:
    weight = get_const(model, node.input[1]).astype(np.float64)
    bias = _bias(model, node, len(scale))
    if node.op_type == "Conv":
        weight = weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    elif node.op_type == "ConvTranspose":
        weight = _scale_convtranspose(weight, scale, attr(node, "group", 1))
    else:
        weight = _scale_gemm(node, weight, scale)
    _set_params(model, node, weight, bias * scale + shift)


def _bias(model, node, channels) -> np.ndarray:
    if len(node.input) > 2 and node.input[2]:
        b = get_const(model, node.input[2]).astype(np.float64)
        if node.op_type == "Gemm":
            b = b * attr(node, "beta", 1.0)
        return np.broadcast_to(b.reshape(-1) if b.size == channels else b, (channels,)).copy()
    return np.zeros(channels)


def _scale_convtranspose(weight, scale, group):
    c_in, m_per_group = weight.shape[0], weight.shape[1]
    w = weight.reshape((group, c_in // group, m_per_group) + weight.shape[2:])
    s = scale.reshape((group, 1, m_per_group) + (1,) * (weight.ndim - 2))
    return (w * s).reshape(weight.shape)


def _scale_gemm(node, weight, scale):
    if attr(node, "transB", 0):
        return weight * scale[:, None]
    return weight * scale[None, :]


def _set_params(model, node, weight, bias) -> None:
    w_name = unique_name(model, node.input[1] + "_bnfold")
    b_name = unique_name(model, (node.input[1]) + "_bnfold_bias")
    set_initializer(model, w_name, weight.astype(np.float32))
    set_initializer(model, b_name, bias.astype(np.float32))
    node.input[1] = w_name
    if node.op_type == "Gemm":
        set_attr(node, "beta", 1.0)  # beta is folded into the new C (and scaled a C that was absent)
    if len(node.input) > 2:
        node.input[2] = b_name
    else:
        node.input.append(b_name)

