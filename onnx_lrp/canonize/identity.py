"""Identity and (inference-time) Dropout nodes pass their input through; remove them."""
from __future__ import annotations

import onnx

from ._edit import copy_model, graph_outputs, remove_nodes, replace_uses


def remove_identities(model: onnx.ModelProto) -> onnx.ModelProto:
    model = copy_model(model)
    doomed = []
    outputs = graph_outputs(model)
    read = {t for n in model.graph.node for t in n.input}
    for node in list(model.graph.node):
        if node.op_type not in ("Identity", "Dropout") or node.domain not in ("", "ai.onnx"):
            continue
        src, dst = node.input[0], node.output[0]
        if len(node.output) > 1 and node.output[1] and (node.output[1] in read or node.output[1] in outputs):
            continue  # a Dropout whose mask is used is not a pass-through here (an unused one is)
        if dst in outputs and (src in outputs or src in {i.name for i in model.graph.input}):
            continue  # keep input->output and output->output copies: both names must survive
        if dst in outputs:
            _rename_producer_output(model, src, dst)
        else:
            replace_uses(model, dst, src)
        doomed.append(node)
    remove_nodes(model, doomed)
    return model


def _rename_producer_output(model, src: str, dst: str) -> None:
    """Keep the graph output's name: the producer of ``src`` writes ``dst`` directly."""
    for node in model.graph.node:
        for i, t in enumerate(node.output):
            if t == src:
                node.output[i] = dst
    for node in model.graph.node:
        for i, t in enumerate(node.input):
            if t == src:
                node.input[i] = dst
    for init in model.graph.initializer:
        if init.name == src:
            init.name = dst
