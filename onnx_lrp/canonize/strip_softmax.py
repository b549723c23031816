"""Explain logits, not probabilities: a trailing Softmax/LogSoftmax is removed."""
from __future__ import annotations

import onnx

from ._edit import copy_model, producers, remove_nodes

_SOFTMAX = ("Softmax", "LogSoftmax")


def strip_softmax(model: onnx.ModelProto, output: str) -> tuple[onnx.ModelProto, str, str | None]:
    """Return the model, the new explained output name and the stripped op type (or None)."""
    node = producers(model).get(output)
    if node is None or node.op_type not in _SOFTMAX:
        return model, output, None
    model = copy_model(model)
    logits = node.input[0]
    remove_nodes(model, [node])
    already = logits in {o.name for o in model.graph.output}
    outs = []
    for out in model.graph.output:
        if out.name == output:
            if already:
                continue  # the logits are an output already; one entry per name
            out.name = logits  # (Log)Softmax keeps the shape, so the declared type still holds
        outs.append(out)
    del model.graph.output[:]
    model.graph.output.extend(outs)
    return model, logits, node.op_type
