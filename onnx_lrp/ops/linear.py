"""Linear ops with weights: Conv, ConvTranspose, Gemm, MatMul with a constant operand.

The VJP of a convolution is the transposed convolution with the same weight (and vice versa);
the VJP of a dense layer multiplies by the transposed weight.
"""
from __future__ import annotations

import math

import numpy as np

from .attention import is_attention_projection
from .base import ATTENTION_PROJECTION, CONV, DENSE, Handler, attr, unsupported
from .registry import handles


def _spatial(shape) -> tuple:
    return tuple(shape[2:])


def resolve_conv_pads(node, in_spatial, kernel, strides, dilations) -> list[int]:
    """Explicit [begin..., end...] pads, resolving auto_pad against the probed input size."""
    auto_pad = attr(node, "auto_pad", "NOTSET")
    n = len(kernel)
    if auto_pad in ("NOTSET", ""):
        return list(attr(node, "pads", [0] * (2 * n)))
    if auto_pad == "VALID":
        return [0] * (2 * n)
    begin, end = [], []
    for size, k, s, d in zip(in_spatial, kernel, strides, dilations):
        out = math.ceil(size / s)
        total = max((out - 1) * s + d * (k - 1) + 1 - size, 0)
        small, large = total // 2, total - total // 2
        begin.append(small if auto_pad == "SAME_UPPER" else large)
        end.append(large if auto_pad == "SAME_UPPER" else small)
    return begin + end


@handles("Conv")
class ConvHandler(Handler):
    category = CONV
    linear = True
    data_input = 0
    data_dependent = "the weight or bias is computed from the explained data; onnx-lrp needs constants"
    weight_input, bias_input, output_channel_axis = 1, 2, 1

    def weight_axes(self, node):
        return (0, 1)  # (C_out, C_in / group, *kernel)

    def check(self, node, g):
        if g.const(node.input[1]) is None:
            raise unsupported(node, "the weight is computed at run time; onnx-lrp needs constant weights")
        if len(node.input) > 2 and node.input[2] and g.const(node.input[2]) is None:
            raise unsupported(node, "the bias is computed at run time; onnx-lrp needs a constant bias")

    def params(self, node, g):
        weight = g.const(node.input[1])
        bias = g.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        return {"weight": weight, "bias": np.zeros(weight.shape[0], weight.dtype) if bias is None else bias}

    def geometry(self, node, g) -> dict:
        weight = g.const(node.input[1])
        kernel = list(attr(node, "kernel_shape", weight.shape[2:]))
        n = len(kernel)
        strides = list(attr(node, "strides", [1] * n))
        dilations = list(attr(node, "dilations", [1] * n))
        in_spatial = _spatial(g.shape(node.input[0]))
        pads = resolve_conv_pads(node, in_spatial, kernel, strides, dilations)
        return dict(kernel_shape=kernel, strides=strides, dilations=dilations, pads=pads,
                    group=attr(node, "group", 1))

    def forward(self, b, node, g, inputs, params):
        geo = self.geometry(node, g)
        args = [inputs[0], b.const(params["weight"], "w"), b.const(params["bias"], "b")]
        return b.op("Conv", args, hint="conv", **geo)

    def vjp(self, b, node, g, grads, params):
        geo = self.geometry(node, g)
        flipped = _flipped_conv_pads(geo)
        if flipped is not None:
            # stride 1: the VJP is a Conv with the flipped, transposed kernel; onnxruntime's Conv
            # kernels are markedly faster than its ConvTranspose
            weight = b.derived_const(params["weight"], "w_flipT", lambda w: flip_transpose(w, geo["group"]))
            return [b.op("Conv", [grads[0], weight], hint="conv_vjp", kernel_shape=geo["kernel_shape"],
                         dilations=geo["dilations"], pads=flipped, group=geo["group"])]
        return [b.op("ConvTranspose", [grads[0], b.const(params["weight"], "w")], hint="conv_vjp",
                     output_padding=self._vjp_output_padding(node, g, geo), **geo)]

    def _vjp_output_padding(self, node, g, geo) -> list[int]:
        in_spatial = _spatial(g.shape(node.input[0]))
        out_spatial = _spatial(g.shape(node.output[0]))
        output_padding = []
        for size, out, k, s, d, pb, pe in zip(in_spatial, out_spatial, geo["kernel_shape"], geo["strides"],
                                               geo["dilations"], geo["pads"][:len(in_spatial)],
                                               geo["pads"][len(in_spatial):]):
            output_padding.append(size - (s * (out - 1) + d * (k - 1) + 1 - pb - pe))
        return output_padding

    def forward_beside(self, b, node, g, params, other):
        """One Conv with the output channels of both weights, split: the input is unfolded once and
        multiplied by one taller matrix instead of two (a plain Conv with one group only)."""
        if node.op_type != "Conv" or self.geometry(node, g)["group"] != 1:
            return None
        geo = self.geometry(node, g)
        weight = np.concatenate([params["weight"], other["weight"]])
        bias = np.concatenate([params["bias"], other["bias"]])
        channels = int(params["weight"].shape[0])

        def emit():
            both = b.op("Conv", [node.input[0], b.const(weight, "w_pair"), b.const(bias, "b_pair")],
                        hint="conv_pair", **geo)
            beside = b.fresh("conv_beside")
            b.op("Split", [both, b.ints([channels, channels])], outputs=[node.output[0], beside], axis=1)
            return beside
        return b.in_forward(node, emit)


def _flipped_conv_pads(geo) -> list[int] | None:
    """Pads of the Conv that computes a stride-1 Conv's VJP, or None when it does not apply."""
    if any(s != 1 for s in geo["strides"]):
        return None
    n = len(geo["kernel_shape"])
    extent = [d * (k - 1) for k, d in zip(geo["kernel_shape"], geo["dilations"])]
    pads = [extent[i % n] - p for i, p in enumerate(geo["pads"])]
    return pads if all(p >= 0 for p in pads) else None


def flip_transpose(weight: np.ndarray, group: int) -> np.ndarray:
    """Conv weight (M, C/g, *k) → the weight (C, M/g, *k) of the conv computing its VJP."""
    m, c_per_group = weight.shape[:2]
    kernel = weight.shape[2:]
    w = weight.reshape((group, m // group, c_per_group) + kernel).swapaxes(1, 2)
    w = w.reshape((group * c_per_group, m // group) + kernel)
    return np.ascontiguousarray(np.flip(w, axis=tuple(range(2, w.ndim))))


@handles("ConvTranspose")
class ConvTransposeHandler(ConvHandler):
    def weight_axes(self, node):
        return (1, 0)  # (C_in, C_out / group, *kernel)

    def out_channels(self, node, weight):
        return int(weight.shape[1]) * attr(node, "group", 1)

    def scale_output_channels(self, node, weight, scale):
        group = attr(node, "group", 1)
        c_in, per_group = weight.shape[0], weight.shape[1]
        w = weight.reshape((group, c_in // group, per_group) + weight.shape[2:])
        s = np.asarray(scale).reshape((group, 1, per_group) + (1,) * (weight.ndim - 2))
        return (w * s).reshape(weight.shape)

    def check(self, node, g):
        super().check(node, g)
        if attr(node, "output_shape") or attr(node, "auto_pad", "NOTSET") not in ("NOTSET", ""):
            raise unsupported(node, "ConvTranspose with output_shape or auto_pad is not supported; "
                                    "export it with explicit pads and output_padding")

    def params(self, node, g):
        weight = g.const(node.input[1])
        out_channels = weight.shape[1] * attr(node, "group", 1)
        bias = g.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        return {"weight": weight, "bias": np.zeros(out_channels, weight.dtype) if bias is None else bias}

    def geometry(self, node, g) -> dict:
        weight = g.const(node.input[1])
        kernel = list(attr(node, "kernel_shape", weight.shape[2:]))
        n = len(kernel)
        return dict(kernel_shape=kernel, strides=list(attr(node, "strides", [1] * n)),
                    dilations=list(attr(node, "dilations", [1] * n)),
                    pads=list(attr(node, "pads", [0] * (2 * n))), group=attr(node, "group", 1))

    def forward(self, b, node, g, inputs, params):
        geo = self.geometry(node, g)
        n = len(geo["kernel_shape"])
        args = [inputs[0], b.const(params["weight"], "w"), b.const(params["bias"], "b")]
        return b.op("ConvTranspose", args, hint="convT",
                    output_padding=list(attr(node, "output_padding", [0] * n)), **geo)

    def vjp(self, b, node, g, grads, params):
        geo = self.geometry(node, g)
        return [b.op("Conv", [grads[0], b.const(params["weight"], "w")], hint="convT_vjp", **geo)]


@handles("Gemm")
class GemmHandler(Handler):
    category = DENSE
    linear = True
    data_input = 0
    data_dependent = "Gemm is supported with the data as A and a constant B"
    weight_input, bias_input, output_channel_axis = 1, 2, -1

    def category_of(self, node, g):
        return ATTENTION_PROJECTION if is_attention_projection(node, g) else DENSE

    def weight_axes(self, node):
        return (0, 1) if attr(node, "transB", 0) else (1, 0)

    def check(self, node, g):
        if node.input[0] not in g.relevant or g.const(node.input[1]) is None:
            raise unsupported(node, "Gemm is supported with the data as A and a constant B")
        if len(node.input) > 2 and node.input[2] and g.const(node.input[2]) is None:
            raise unsupported(node, "the Gemm's C is computed at run time; onnx-lrp needs a constant bias")

    def _out_features(self, node, weight):
        return weight.shape[0] if attr(node, "transB", 0) else weight.shape[1]

    def params(self, node, g):
        # alpha is folded into the weight so that rules modify the effective weight alpha·B
        weight = g.const(node.input[1])
        if attr(node, "alpha", 1.0) != 1.0:
            weight = weight * np.float32(attr(node, "alpha", 1.0))
        m = self._out_features(node, weight)
        bias = np.zeros(m, weight.dtype)
        if len(node.input) > 2 and node.input[2]:
            c = g.const(node.input[2]) * attr(node, "beta", 1.0)
            bias = np.broadcast_to(c, (1, m)).reshape(m) if c.size in (1, m) else c
        return {"weight": weight, "bias": bias}

    def forward(self, b, node, g, inputs, params):
        args = [inputs[0], b.const(params["weight"], "w"), b.const(params["bias"], "b")]
        return b.op("Gemm", args, hint="gemm", transA=attr(node, "transA", 0), transB=attr(node, "transB", 0))

    def vjp(self, b, node, g, grads, params):
        grad = b.op("Gemm", [grads[0], b.const(params["weight"], "w")], hint="gemm_vjp",
                    transB=1 - attr(node, "transB", 0))
        if attr(node, "transA", 0):
            grad = b.op("Transpose", [grad], perm=[1, 0])
        return [grad]


@handles("MatMul")
class MatMulHandler(Handler):
    """MatMul with one constant 2-D operand: x @ W (data first) or W @ x (data second)."""

    category = DENSE
    linear = True

    weight_input, output_channel_axis = 1, -1  # x @ W, as exporters write dense layers; W @ x has it first

    def category_of(self, node, g):
        return ATTENTION_PROJECTION if is_attention_projection(node, g) else DENSE

    def weight_axes(self, node):
        return (1, 0)  # W (in, out) of x @ W

    def out_channels(self, node, weight):
        return int(weight.shape[1]) if weight.ndim == 2 else None  # a batched weight has no single axis

    def _data_index(self, node, g) -> int:
        return 0 if node.input[0] in g.relevant else 1

    def relevant_inputs(self, node, g):
        return [self._data_index(node, g)]

    def check(self, node, g):
        weight = g.const(node.input[1 - self._data_index(node, g)])
        if weight is None or weight.ndim != 2:
            raise unsupported(node, "MatMul is supported with a constant 2-D operand")
        if self._data_index(node, g) == 1 and len(g.shape(node.input[1])) < 3:
            raise unsupported(node, "W @ x with a 2-D x contracts the batch axis, mixing samples")

    def params(self, node, g):
        weight = g.const(node.input[1 - self._data_index(node, g)])
        bias_len = weight.shape[1] if self._data_index(node, g) == 0 else 1
        return {"weight": weight, "bias": np.zeros(bias_len, weight.dtype)}

    def forward(self, b, node, g, inputs, params):
        w = b.const(params["weight"], "w")
        args = [inputs[0], w] if self._data_index(node, g) == 0 else [w, inputs[0]]
        out = b.op("MatMul", args, hint="matmul")
        if np.any(params["bias"]):
            out = b.op("Add", [out, b.const(params["bias"], "b")])
        return out

    def vjp(self, b, node, g, grads, params):
        wt = b.const(np.ascontiguousarray(params["weight"].T), "wT")
        args = [grads[0], wt] if self._data_index(node, g) == 0 else [wt, grads[0]]
        return [b.op("MatMul", args, hint="matmul_vjp")]
