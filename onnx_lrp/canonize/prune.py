"""Keep only the nodes the explained output needs (drops e.g. a classifier's label branch)."""
from __future__ import annotations

import onnx

from ._edit import copy_model, drop_unused_initializers, node_key, producers, reads


def prune_to_output(model: onnx.ModelProto, output: str) -> onnx.ModelProto:
    """Keep the nodes ``output`` depends on, that output only, and the inputs those nodes read
    (an unused graph input would still have to be fed to every session)."""
    model = copy_model(model)
    made_by = producers(model)
    needed, stack = set(), [output]
    while stack:
        node = made_by.get(stack.pop())
        if node is None or node_key(node) in needed:
            continue
        needed.add(node_key(node))
        stack.extend(reads(node))
    keep = [n for n in model.graph.node if node_key(n) in needed]
    del model.graph.node[:]
    model.graph.node.extend(keep)
    outs = [o for o in model.graph.output if o.name == output]
    del model.graph.output[:]
    model.graph.output.extend(outs)
    used = {t for n in keep for t in reads(n)} | {output}
    ins = [i for i in model.graph.input if i.name in used]
    del model.graph.input[:]
    model.graph.input.extend(ins)
    drop_unused_initializers(model)
    return model

