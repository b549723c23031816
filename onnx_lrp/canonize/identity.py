"""Identity and (inference-time) Dropout nodes pass their input through; remove them."""
from __future__ import annotations

import onnx

from ._edit import copy_model
from .editor import GraphEditor


def remove_identities(model: onnx.ModelProto) -> onnx.ModelProto:
    model = copy_model(model)
    edit = GraphEditor(model)
    read = {t for n in model.graph.node for t in n.input}
    for node in edit.nodes():
        if node.op_type not in ("Identity", "Dropout") or node.domain not in ("", "ai.onnx"):
            continue
        src, dst = node.input[0], node.output[0]
        if len(node.output) > 1 and node.output[1] and (node.output[1] in read or edit.is_output(node.output[1])):
            continue  # a Dropout whose mask is used is not a pass-through here (an unused one is)
        if edit.is_output(dst) and (edit.is_output(src) or src in edit.inputs):
            continue  # keep input->output and output->output copies: both names must survive
        if edit.read_in_subgraph(src if edit.is_output(dst) else dst):
            continue  # the name that would go is read inside an If/Loop body, which keeps its names
        edit.remove(node)
        if edit.is_output(dst):
            edit.rename_tensor(src, dst)  # keep the graph output's name: src's producer writes it
        else:
            edit.rename_uses(dst, src)
    return edit.commit()
