"""Small helpers shared by the canonization passes."""
from __future__ import annotations

import numpy as np
import onnx

from ..weights import make_initializer, store_of, tensor_value


def copy_model(model: onnx.ModelProto) -> onnx.ModelProto:
    new = onnx.ModelProto()
    new.CopyFrom(model)
    return new


def consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for t in node.input:
            if t:
                out.setdefault(t, []).append(node)
    return out


def producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {t: node for node in model.graph.node for t in node.output if t}


def graph_outputs(model: onnx.ModelProto) -> set[str]:
    return {o.name for o in model.graph.output}


def init_map(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in model.graph.initializer}


def get_const(model: onnx.ModelProto, name: str) -> np.ndarray | None:
    for t in model.graph.initializer:
        if t.name == name:
            return tensor_value(t)
    return None


def set_initializer(model: onnx.ModelProto, name: str, array: np.ndarray) -> None:
    """Add or replace initializer ``name``."""
    # np.asarray, not np.ascontiguousarray: the latter turns a scalar into shape (1,), which changes
    # the rank of e.g. a Gather with a scalar index or an Unsqueeze of a scalar size
    tensor = make_initializer(name, np.asarray(array), store_of(model))
    for i, t in enumerate(model.graph.initializer):
        if t.name == name:
            model.graph.initializer[i].CopyFrom(tensor)
            return
    model.graph.initializer.append(tensor)


def unique_name(model: onnx.ModelProto, base: str) -> str:
    used = {t.name for t in model.graph.initializer}
    used |= {t for n in model.graph.node for t in list(n.input) + list(n.output)}
    name, i = base, 0
    while name in used:
        i += 1
        name = f"{base}_{i}"
    return name


def replace_uses(model: onnx.ModelProto, old: str, new: str) -> None:
    """Make every consumer (and graph output) of tensor ``old`` read ``new`` instead."""
    for node in model.graph.node:
        for i, t in enumerate(node.input):
            if t == old:
                node.input[i] = new
    for out in model.graph.output:
        if out.name == old:
            out.name = new


def node_key(node: onnx.NodeProto) -> tuple:
    """Identifies a node even when it is unnamed (passes are public and may see raw models): in a
    valid graph no two nodes write the same output."""
    return node.name, node.op_type, tuple(node.input), tuple(node.output)


def remove_nodes(model: onnx.ModelProto, doomed: list[onnx.NodeProto]) -> None:
    keys = {node_key(n) for n in doomed}
    keep = [n for n in model.graph.node if node_key(n) not in keys]
    del model.graph.node[:]
    model.graph.node.extend(keep)


def drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = {t for n in model.graph.node for t in reads(n)}
    used |= {o.name for o in model.graph.output}
    keep = [t for t in model.graph.initializer if t.name in used]
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


def out_channels(model: onnx.ModelProto, linear: onnx.NodeProto) -> int | None:
    """Output channels of a Conv/ConvTranspose/Gemm/MatMul with a constant weight; None for a
    MatMul whose weight is not a matrix (it has no single channel axis)."""
    w = get_const(model, linear.input[1])
    if linear.op_type == "Conv":
        return w.shape[0]
    if linear.op_type == "ConvTranspose":
        return w.shape[1] * attr(linear, "group", 1)
    if linear.op_type == "Gemm":
        return w.shape[0] if attr(linear, "transB", 0) else w.shape[1]
    return w.shape[1] if w.ndim == 2 else None


def channel_bias(model: onnx.ModelProto, linear: onnx.NodeProto, channels: int) -> np.ndarray | None:
    """The linear op's bias as one float64 value per output channel (zeros when it has none, a
    Gemm's beta applied), or None when it cannot take a folded constant."""
    if len(linear.input) < 3 or not linear.input[2]:
        return np.zeros(channels)
    old = get_const(model, linear.input[2])
    if old is None:
        return None  # a bias computed at run time cannot absorb a constant
    old = old.astype(np.float64)
    if linear.op_type == "Gemm":
        old = old * attr(linear, "beta", 1.0)
    if old.size not in (1, channels) or (old.ndim == 2 and old.shape[0] != 1):
        return None  # a per-sample Gemm C cannot be a bias
    return np.broadcast_to(old.reshape(-1), (channels,))


def set_bias(model: onnx.ModelProto, linear: onnx.NodeProto, bias: np.ndarray, base: str) -> None:
    """Store ``bias`` (float32) under a fresh name from ``base`` as the linear op's third input."""
    name = unique_name(model, base)
    set_initializer(model, name, bias.astype(np.float32))
    if len(linear.input) > 2:
        linear.input[2] = name
    else:
        linear.input.append(name)


def reads(node: onnx.NodeProto) -> set[str]:
    """Tensors ``node`` reads, including those its subgraphs (If/Loop/Scan bodies) read from the
    enclosing scope; a name a subgraph defines itself is over-approximated as read, which only
    keeps more."""
    names = {t for t in node.input if t}
    for a in node.attribute:
        graphs = [a.g] if a.type == onnx.AttributeProto.GRAPH else (
            list(a.graphs) if a.type == onnx.AttributeProto.GRAPHS else [])
        for g in graphs:
            for inner in g.node:
                names |= reads(inner)
    return names
