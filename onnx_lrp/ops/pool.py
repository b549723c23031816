"""Pooling and reductions.

MaxPool routes relevance to the winner of each window (its VJP, via the indices MaxPool returns);
average pools and ReduceMean/ReduceSum are linear maps without weights (Norm rule). The average
pool's VJP is computed per spatial axis with constant 0/1 window matrices, which handles pads,
dilations, ceil_mode and count_include_pad exactly as the forward does.
"""
from __future__ import annotations

import numpy as np
from onnx import helper

from .base import AVGPOOL, KEEPS_SIGN, MAXPOOL, Handler, attr, unsupported
from .linear import resolve_conv_pads
from .registry import handles


def _pool_geometry(node, in_spatial):
    kernel = list(attr(node, "kernel_shape"))
    n = len(kernel)
    strides = list(attr(node, "strides", [1] * n))
    dilations = list(attr(node, "dilations", [1] * n))
    pads = resolve_conv_pads(node, in_spatial, kernel, strides, dilations)
    return kernel, strides, dilations, pads


@handles("MaxPool", "GlobalMaxPool")
class MaxPoolHandler(Handler):
    category = MAXPOOL
    sign = KEEPS_SIGN
    data_input = 0

    def check(self, node, g):
        if attr(node, "storage_order", 0) != 0:
            raise unsupported(node, "MaxPool with storage_order=1")

    def _attrs(self, node, g) -> dict:
        if node.op_type == "GlobalMaxPool":
            return {"kernel_shape": list(g.shape(node.input[0])[2:])}
        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def vjp(self, b, node, g, grads, params):
        x = node.input[0]
        attrs = self._attrs(node, g)
        if node.op_type == "MaxPool":  # the forward MaxPool also returns the winners' indices
            indices = b.forward_output(node, 1, "maxpool_idx")
        else:
            _, indices = b.op("MaxPool", [x], n_out=2, hint="maxpool_idx", **attrs)
        # MaxUnpool has no CUDA kernel in onnxruntime: on a GPU it runs on the host, with copies
        # both ways (98 % of VGG-16's batch-32 explain time on an H100), so CUDA graphs scatter
        if b.device != "cuda" and _disjoint_windows(attrs) and _unpool_fits(node, g, attrs):
            # each input wins at most once: MaxUnpool places, no sums needed
            unpool = {k: v for k, v in attrs.items() if k in ("kernel_shape", "strides", "pads")}
            return [b.op("MaxUnpool", [grads[0], indices, b.op("Shape", [x])], hint="maxpool_vjp", **unpool)]
        flat = b.ints([-1])
        zeros = b.op("Reshape", [b.zeros_like(x), flat])
        scattered = b.op("ScatterElements", [zeros, b.op("Reshape", [indices, flat]),
                                             b.op("Reshape", [grads[0], flat])], axis=0, reduction="add")
        return [b.op("Reshape", [scattered, b.op("Shape", [x])], hint="maxpool_vjp")]


def _disjoint_windows(attrs: dict) -> bool:
    kernel = attrs.get("kernel_shape", [])
    strides = attrs.get("strides", [1] * len(kernel))
    dilations = attrs.get("dilations", [1] * len(kernel))
    return attrs.get("auto_pad", "NOTSET") in ("NOTSET", b"NOTSET", "VALID", b"VALID") and all(
        d == 1 and k <= s for k, s, d in zip(kernel, strides, dilations))


def _unpool_fits(node, g, attrs: dict) -> bool:
    """MaxUnpool computes its default output size, (O−1)·s + k − pads, before it reads the
    output shape it is given, and refuses one that is not positive (padding larger than the
    windows span: e.g. a ``ceil_mode`` pool on a tiny input) or that exceeds the input (the
    input smaller than one window, which the pool then pads implicitly)."""
    in_spatial, out_spatial = g.shape(node.input[0])[2:], g.shape(node.output[0])[2:]
    kernel = attrs.get("kernel_shape", [])
    n = len(kernel)
    strides = attrs.get("strides", [1] * n)
    pads = attrs.get("pads", [0] * (2 * n))
    return all(0 < (out - 1) * s + k - pads[i] - pads[n + i] <= size
               for i, (size, out, k, s) in enumerate(zip(in_spatial, out_spatial, kernel, strides)))


@handles("AveragePool")
class AveragePoolHandler(Handler):
    category = AVGPOOL
    sign = KEEPS_SIGN
    linear = True
    data_input = 0

    def vjp(self, b, node, g, grads, params):
        in_spatial = tuple(g.shape(node.input[0])[2:])
        out_spatial = tuple(g.shape(node.output[0])[2:])
        kernel, strides, dilations, pads = _pool_geometry(node, in_spatial)
        n = len(kernel)
        mats, counts = [], []
        include_pad = attr(node, "count_include_pad", 0)
        for d in range(n):
            mat, count = _window_matrix(in_spatial[d], out_spatial[d], kernel[d], strides[d], dilations[d],
                                        pads[d], pads[n + d], include_pad)
            mats.append(mat)
            counts.append(count)
        divisor = counts[0]
        for c in counts[1:]:
            divisor = np.multiply.outer(divisor, c)
        grad = b.mul(grads[0], b.const((1.0 / divisor)[None, None], "avg_inv_count"))
        return [_contract_spatial(b, grad, mats, len(g.shape(node.input[0])))]


def _window_matrix(size, out, k, s, d, pad_begin, pad_end, include_pad):
    """0/1 matrix (out × size) of which inputs each window reads, and each window's divisor."""
    mat = np.zeros((out, size), np.float32)
    count = np.zeros(out, np.float64)
    for o in range(out):
        positions = [o * s - pad_begin + j * d for j in range(k)]
        valid = [p for p in positions if 0 <= p < size]
        mat[o, valid] = 1.0
        in_bounds = [p for p in positions if -pad_begin <= p < size + pad_end] if include_pad else valid
        count[o] = max(len(in_bounds), 1)
    return mat, count


def _contract_spatial(b, grad, mats, rank):
    """Apply each window matrix's transpose along its spatial axis (axis 2 + i)."""
    for i, mat in enumerate(mats):
        axis = 2 + i
        if axis == rank - 1:
            grad = b.op("MatMul", [grad, b.const(mat, "win")])
            continue
        perm = list(range(rank))
        perm[axis], perm[rank - 1] = perm[rank - 1], perm[axis]
        moved = b.op("Transpose", [grad], perm=perm)
        grad = b.op("Transpose", [b.op("MatMul", [moved, b.const(mat, "win")])], perm=perm)
    return grad


@handles("GlobalAveragePool")
class GlobalAveragePoolHandler(Handler):
    category = AVGPOOL
    sign = KEEPS_SIGN
    linear = True
    data_input = 0

    def vjp(self, b, node, g, grads, params):
        x = node.input[0]
        area = int(np.prod(g.shape(x)[2:]))
        grad = b.mul(grads[0], b.const(1.0 / area))
        return [b.op("Expand", [grad, b.op("Shape", [x])], hint="gap_vjp")]


@handles("ReduceSum", "ReduceMean")
class ReduceHandler(Handler):
    """ReduceSum and ReduceMean: sums over axes (Norm rule)."""

    category = AVGPOOL
    sign = KEEPS_SIGN
    linear = True
    data_input = 0

    def axes(self, node, g) -> list[int]:
        rank = len(g.shape(node.input[0]))
        axes = attr(node, "axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = g.const(node.input[1])
            if axes is None:
                raise unsupported(node, "the reduction axes are computed at run time")
            axes = axes.tolist()
        if not axes:
            return [] if attr(node, "noop_with_empty_axes", 0) else list(range(rank))
        return sorted(a % rank for a in axes)

    def check(self, node, g):
        if any(g.is_batch_axis(node.input[0], a) for a in self.axes(node, g)):
            raise unsupported(node, "a reduction over the batch axis mixes samples")

    def vjp(self, b, node, g, grads, params):
        x = node.input[0]
        axes = self.axes(node, g)
        grad = grads[0]
        if node.op_type == "ReduceMean":
            count = int(np.prod([g.shape(x)[a] for a in axes])) if axes else 1
            grad = b.mul(grad, b.const(1.0 / count))
        if not attr(node, "keepdims", 1) and axes:
            grad = b.op("Unsqueeze", [grad, b.ints(axes)])
        return [b.op("Expand", [grad, b.op("Shape", [x])], hint="reduce_vjp")]
