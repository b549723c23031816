"""Resize (and the Upsample of old opsets): interpolation is a linear map of the input.

Nearest, linear and cubic interpolation are separable: along each resized axis the output is a
constant matrix ``M`` (out × in) times the input. The matrices are read off onnxruntime at compile
time by resizing one-hot inputs with the node's own attributes, so every coordinate
transformation and rounding mode is exactly what the forward pass does; the VJP multiplies by
``Mᵀ`` along each axis.

Category *avgpool* (Norm rule: ``x ⊙ VJP(R / stab(Resize(x)))``): like an average pool, an
interpolation is a parameter-free linear map whose weights per output sum to 1, and the Norm rule
gives each input relevance in proportion to its contribution. For nearest-neighbour resizing it
equals the plain VJP except at inputs that are exactly 0. Zennit has no rule for upsampling (the
plain gradient passes through ``nn.Upsample``); the gradient sends relevance to inputs of value
0 (e.g. the zeros of a ReLU map that a bilinear kernel overlaps), where the next LRP-0 step has
nothing to attribute it to: on the tf2onnx fixture that loses 1e-3 of the relevance, Norm none.
``type_map={"Resize": onnx_lrp.rules.Gradient()}`` restores the gradient.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..executor import CPU, make_session
from .base import AVGPOOL, Handler, attr, unsupported
from .registry import handles

_MODES = ("nearest", "linear", "cubic")


@handles("Resize", "Upsample")
class ResizeHandler(Handler):
    category = AVGPOOL
    linear = True
    # not KEEPS_SIGN: cubic interpolation of non-negative values can undershoot below zero
    data_input = 0
    data_dependent = "its scales or sizes depend on the data"

    def check(self, node, g):
        if attr(node, "mode", "nearest") not in _MODES:
            raise unsupported(node, f"interpolation mode {attr(node, 'mode')!r}")
        if attr(node, "coordinate_transformation_mode", "half_pixel") == "tf_crop_and_resize":
            raise unsupported(node, "tf_crop_and_resize extrapolates constants outside the crop, which is not "
                                    "linear in the input")
        if attr(node, "keep_aspect_ratio_policy", "stretch") != "stretch":
            raise unsupported(node, "keep_aspect_ratio_policy other than 'stretch'")
        for i, t in enumerate(node.input[1:], start=1):
            # sizes computed at run time are fine: the interpolation follows from the input and
            # output sizes alone, which the probe gives at the compiled shape (a dynamic-batch
            # export writes them as Concat(Shape(x)[:1], sizes), which the batch keeps at run time)
            if t and g.const(t) is None and not (node.op_type == "Resize" and i == 3):
                raise unsupported(node, "its roi or scales are computed at run time; onnx-lrp needs them "
                                        "constant (export with a fixed scale factor or output size)")
        in_shape, out_shape = g.shape(node.input[0]), g.shape(node.output[0])
        if in_shape[0] != out_shape[0]:
            raise unsupported(node, "it resizes the batch axis")

    def _scales(self, node, g) -> list[float] | None:
        """Per-axis scales when the node gives scales (None when it gives sizes)."""
        rank = len(g.shape(node.input[0]))
        if node.op_type == "Upsample":
            given = g.const(node.input[1]) if len(node.input) > 1 else attr(node, "scales")
            return [float(s) for s in np.asarray(given).reshape(-1)]
        scales = g.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if scales is None or scales.size == 0:
            return None
        axes = attr(node, "axes")
        full = [1.0] * rank
        for axis, s in zip(axes if axes is not None else range(rank), scales.reshape(-1)):
            full[int(axis) % rank] = float(s)
        return full

    def matrices(self, node, g) -> dict[int, np.ndarray]:
        """Axis -> interpolation matrix (out × in) for every axis the node changes."""
        return g.memo("resize matrices", node, lambda: self._matrices(node, g))

    def _matrices(self, node, g) -> dict[int, np.ndarray]:
        in_shape, out_shape = g.shape(node.input[0]), g.shape(node.output[0])
        scales = self._scales(node, g)
        return {axis: self._probe(node, axis, in_shape, out_shape, scales)
                for axis in range(1, len(in_shape))
                if in_shape[axis] != out_shape[axis] or (scales is not None and scales[axis] != 1.0)}

    def _probe(self, node, axis, in_shape, out_shape, scales) -> np.ndarray:
        """Resize the unit vectors along ``axis`` (stacked on axis 0) with the node's attributes."""
        rank, size = len(in_shape), int(in_shape[axis])
        probe_shape = [1] * rank
        probe_shape[0], probe_shape[axis] = size, size
        eye = np.eye(size, dtype=np.float32).reshape(probe_shape)
        keep = {"mode", "coordinate_transformation_mode", "nearest_mode", "cubic_coeff_a", "exclude_outside",
                "antialias"}
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name in keep}
        if node.op_type == "Upsample":
            attrs["coordinate_transformation_mode"] = "asymmetric"
            attrs["nearest_mode"] = "floor"
        inits = [numpy_helper.from_array(np.zeros(0, np.float32), "roi")]
        if scales is not None:
            s = [1.0] * rank
            s[axis] = scales[axis]
            inits.append(numpy_helper.from_array(np.asarray(s, np.float32), "scales"))
            inputs = ["x", "roi", "scales"]
        else:
            sizes = list(probe_shape)
            sizes[axis] = int(out_shape[axis])
            inits.append(numpy_helper.from_array(np.asarray(sizes, np.int64), "sizes"))
            inputs = ["x", "roi", "", "sizes"]
        graph = helper.make_graph(
            [helper.make_node("Resize", inputs, ["y"], **attrs)], "resize_probe",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, probe_shape)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
        model.ir_version = 9
        try:
            out = make_session(model, [CPU], optimize=False).run(["y"], {"x": eye})[0]
        except Exception as exc:
            raise unsupported(node, f"onnxruntime cannot resize axis {axis} alone with these attributes "
                                    f"({type(exc).__name__}: {exc})") from exc
        if out.shape[axis] != out_shape[axis]:
            raise unsupported(node, f"resizing axis {axis} alone gives {out.shape[axis]} values, the node "
                                    f"{out_shape[axis]}")
        return np.ascontiguousarray(out.reshape(size, int(out_shape[axis])).T)

    def vjp(self, b, node, g, grads, params):
        grad = grads[0]
        rank = len(g.shape(node.input[0]))
        for axis, mat in self.matrices(node, g).items():
            grad = _apply_along(b, grad, mat, axis, rank)
        return [grad]


def _apply_along(b, grad: str, mat: np.ndarray, axis: int, rank: int) -> str:
    """``grad`` with its ``axis`` (length out) contracted with ``mat`` (out × in)."""
    w = b.const(mat, "resize_mat")
    if axis == rank - 1:
        return b.op("MatMul", [grad, w], hint="resize_vjp")
    perm = list(range(rank))
    perm[axis], perm[rank - 1] = perm[rank - 1], perm[axis]
    moved = b.op("Transpose", [grad], perm=perm)
    return b.op("Transpose", [b.op("MatMul", [moved, w])], perm=perm, hint="resize_vjp")
