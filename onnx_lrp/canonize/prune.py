"""Keep only the nodes the explained output needs (drops e.g. a classifier's label branch)."""
from __future__ import annotations

import onnx

from ._edit import copy_model, drop_unused_initializers, producers


def prune_to_output(model: onnx.ModelProto, output: str) -> onnx.ModelProto:
    model = copy_model(model)
    made_by = producers(model)
    needed, stack = set(), [output]
    while stack:
        t = stack.pop()
        node = made_by.get(t)
        if node is None or node.name in needed:
            continue
        needed.add(node.name)
        stack.extend(i for i in node.input if i)
    keep = [n for n in model.graph.node if n.name in needed]
    del model.graph.node[:]
    model.graph.node.extend(keep)
    outs = [o for o in model.graph.output if o.name == output]
    del model.graph.output[:]
    model.graph.output.extend(outs)
    drop_unused_initializers(model)
    return model
