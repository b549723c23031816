"""``ceil_mode`` pools specialised to one probed input shape, so that ONNX shape inference and
onnxruntime agree on every tensor the explainer graph builds on.

onnxruntime (like PyTorch) drops a ``ceil_mode`` pool's last window when it would start in the end
padding; ONNX shape inference keeps it. The probe reads shapes off a run, so the compiler's own
arithmetic is right either way, but the explainer graph is type-checked by onnxruntime with ONNX
inference, and a relevance tensor of the true shape combined with the pool output's inferred
shape does not load. Rewritten at the probed shape with ``ceil_mode=0`` and explicit end padding,
a pool computes the same values and every tool agrees on its output shape. What still disagrees
afterwards is refused (:func:`check_agreement`) rather than explained with shapes nobody can vouch
for.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from .canonize.editor import NameAllocator
from .compile import all_names
from .errors import UnsupportedOp
from .ops.base import attr
from .ops.linear import resolve_conv_pads
from .probe import inferred_shapes

_POOLS = ("MaxPool", "AveragePool", "LpPool")


def specialize_pools(model: onnx.ModelProto, shapes: dict, dtypes: dict) -> tuple[onnx.ModelProto, dict, dict]:
    """``model`` with its ``ceil_mode`` pools rewritten for the probed ``shapes`` (the input
    model is not changed when nothing needs rewriting); shapes and dtypes of added tensors too."""
    pools = [i for i, n in enumerate(model.graph.node) if n.op_type in _POOLS and attr(n, "ceil_mode", 0)]
    if not pools:
        return model, shapes, dtypes
    model = _copy(model)
    shapes, dtypes = dict(shapes), dict(dtypes)
    names = NameAllocator(all_names(model))
    added = 0
    for i in pools:
        node = model.graph.node[i + added]
        new_nodes = _floor_mode(model, node, shapes, dtypes, names)
        if new_nodes is not None:
            model.graph.node.pop(i + added)
            for j, n in enumerate(new_nodes):
                model.graph.node.insert(i + added + j, n)
            added += len(new_nodes) - 1
    return model, shapes, dtypes


def _floor_mode(model: onnx.ModelProto, node: onnx.NodeProto, shapes: dict, dtypes: dict,
                names: NameAllocator) -> list | None:
    """The pool as ``ceil_mode=0`` nodes with end pads that give the probed output size."""
    x, y = node.input[0], node.output[0]
    if x not in shapes or y not in shapes or attr(node, "auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        return None
    in_spatial, out_spatial = shapes[x][2:], shapes[y][2:]
    kernel = list(attr(node, "kernel_shape"))
    n = len(kernel)
    strides = list(attr(node, "strides", [1] * n))
    dilations = list(attr(node, "dilations", [1] * n))
    pads = resolve_conv_pads(node, in_spatial, kernel, strides, dilations)
    for d in range(n):  # the last window must end inside the padded input
        span = (out_spatial[d] - 1) * strides[d] + (kernel[d] - 1) * dilations[d] + 1
        pads[n + d] += max(0, span - (in_spatial[d] + pads[d] + pads[n + d]))
        if pads[n + d] >= kernel[d]:
            return None  # onnxruntime refuses pads as large as the kernel (dilated windows)
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute
             if a.name not in ("ceil_mode", "auto_pad", "pads")}
    if node.op_type == "AveragePool" and attr(node, "count_include_pad", 0):
        # the divisor counts the model's own padding but not the extension: pad with zeros
        # explicitly, then count only real (now padded) positions
        original = resolve_conv_pads(node, in_spatial, kernel, strides, dilations)
        padded = names.fresh(f"{y}/padded")
        shapes[padded] = tuple(shapes[x][:2]) + tuple(s + original[d] + original[n + d]
                                                      for d, s in enumerate(in_spatial))
        dtypes[padded] = dtypes[x]
        pad_amounts = names.fresh(f"{y}/pads")
        model.graph.initializer.append(onnx.numpy_helper.from_array(
            np.array([0, 0] + original[:n] + [0, 0] + original[n:], np.int64), pad_amounts))
        extension = [0] * n + [pads[n + d] - original[n + d] for d in range(n)]
        attrs["count_include_pad"] = 0
        pad_node = helper.make_node("Pad", [x, pad_amounts], [padded], name=names.fresh(f"{node.name}/pad"))
        pool = helper.make_node("AveragePool", [padded], list(node.output), name=node.name, pads=extension, **attrs)
        return [pad_node, pool]
    return [helper.make_node(node.op_type, list(node.input), list(node.output), name=node.name,
                             domain=node.domain or None, pads=pads, **attrs)]


def check_agreement(model: onnx.ModelProto, feeds: dict, shapes: dict, label: str) -> None:
    """Refuse a model where ONNX shape inference determines a tensor's shape and onnxruntime
    computes another for the inputs ``feeds``: the explainer graph could not be trusted (or even
    loaded) there."""
    inferred = inferred_shapes(model, feeds)
    given = {name: tuple(np.shape(v)) for name, v in feeds.items()}
    at = str(next(iter(given.values()))) if len(given) == 1 else str(given)
    for node in model.graph.node:
        for out in node.output:
            if out in inferred and out in shapes and tuple(inferred[out]) != tuple(shapes[out]):
                raise UnsupportedOp(
                    f"node {node.name!r} (op type {node.op_type!r}) of {label!r}: ONNX shape inference says "
                    f"its output {out!r} has shape {tuple(inferred[out])}, onnxruntime computes "
                    f"{tuple(shapes[out])} for an input of shape {at}; onnx-lrp cannot "
                    "build a consistent explainer for it: re-export the model without this op configuration "
                    "or explain another input size")


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    new = onnx.ModelProto()
    new.CopyFrom(model)
    return new
