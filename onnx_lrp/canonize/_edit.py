"""Small helpers shared by the canonization passes."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper


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
            return numpy_helper.to_array(t)
    return None


def set_initializer(model: onnx.ModelProto, name: str, array: np.ndarray) -> None:
    """Add or replace initializer ``name``."""
    tensor = numpy_helper.from_array(np.ascontiguousarray(array), name)
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


def remove_nodes(model: onnx.ModelProto, doomed: list[onnx.NodeProto]) -> None:
    names = {n.name for n in doomed}
    keep = [n for n in model.graph.node if n.name not in names]
    del model.graph.node[:]
    model.graph.node.extend(keep)


def drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = {t for n in model.graph.node for t in n.input}
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
