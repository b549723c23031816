"""Explain logits, not probabilities: a trailing Softmax/LogSoftmax is removed."""
from __future__ import annotations

import onnx

from ._edit import copy_model
from .editor import GraphEditor

_SOFTMAX = ("Softmax", "LogSoftmax")


def strip_softmax(model: onnx.ModelProto, output: str) -> tuple[onnx.ModelProto, str, str | None]:
    """Return the model, the new explained output name and the stripped op type (or None)."""
    node = next((n for n in reversed(model.graph.node) if output in n.output), None)
    if node is None or node.op_type not in _SOFTMAX:
        return model, output, None
    model = copy_model(model)
    edit = GraphEditor(model)
    node = edit.producer(output)
    logits = node.input[0]
    edit.remove(node)
    model = edit.commit()
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
