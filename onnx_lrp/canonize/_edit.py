"""Small helpers shared by the canonization passes.

Lookups and edits of the graph's wiring go through :class:`~onnx_lrp.canonize.editor.GraphEditor`
(indexed, so a pass stays linear in the graph size); the helpers here read one node or one value.
"""
from __future__ import annotations

import numpy as np
import onnx

from .editor import GraphEditor, needed_by, reads  # noqa: F401 - used by the passes, graph.py, specialize.py


def copy_model(model: onnx.ModelProto) -> onnx.ModelProto:
    new = onnx.ModelProto()
    new.CopyFrom(model)
    return new


def drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = {t for n in model.graph.node for t in reads(n)}
    used |= {o.name for o in model.graph.output}
    keep = [t for t in model.graph.initializer if t.name in used]
    if len(keep) == len(model.graph.initializer):
        return
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def set_attr(node: onnx.NodeProto, name: str, value) -> None:
    for i, a in enumerate(node.attribute):
        if a.name == name:
            del node.attribute[i]
            break
    node.attribute.append(onnx.helper.make_attribute(name, value))


def weighted(node: onnx.NodeProto | None, with_bias: bool = False):
    """The handler of ``node`` when it is a layer with a weight input (and a bias input, with
    ``with_bias``): Conv, ConvTranspose, Gemm, MatMul, as their handlers declare; else None."""
    if node is None:
        return None
    from ..ops.registry import lookup  # the handlers know the layers (imported late: ops imports graph)

    handler = lookup(node)
    if handler is None or handler.weight_input is None or (with_bias and handler.bias_input is None):
        return None
    return handler


def out_channels(edit: GraphEditor, linear: onnx.NodeProto) -> int | None:
    """Output channels of a weighted layer with a constant weight (its handler says how to read
    them); None for a MatMul whose weight is not a matrix (it has no single channel axis)."""
    return weighted(linear).out_channels(linear, edit.const(linear.input[1]))


def channel_bias(edit: GraphEditor, linear: onnx.NodeProto, channels: int) -> np.ndarray | None:
    """The linear op's bias as one float64 value per output channel (zeros when it has none, a
    Gemm's beta applied), or None when it cannot take a folded constant."""
    if len(linear.input) < 3 or not linear.input[2]:
        return np.zeros(channels)
    old = edit.const(linear.input[2])
    if old is None:
        return None  # a bias computed at run time cannot absorb a constant
    old = old.astype(np.float64)
    if linear.op_type == "Gemm":
        old = old * attr(linear, "beta", 1.0)
    if old.size not in (1, channels) or (old.ndim == 2 and old.shape[0] != 1):
        return None  # a per-sample Gemm C cannot be a bias
    return np.broadcast_to(old.reshape(-1), (channels,))


def set_bias(edit: GraphEditor, linear: onnx.NodeProto, bias: np.ndarray, base: str) -> None:
    """Store ``bias`` (float32) under a fresh name from ``base`` as the linear op's third input."""
    name = edit.fresh(base)
    edit.set_const(name, bias.astype(np.float32))
    edit.set_input(linear, min(2, len(linear.input)), name)
