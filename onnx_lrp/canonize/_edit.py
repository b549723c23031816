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
