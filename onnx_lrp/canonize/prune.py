"""Keep only the nodes the explained output needs (drops e.g. a classifier's label branch)."""
from __future__ import annotations

import onnx

from ._edit import copy_model, drop_unused_initializers, needed_by, reads
from .editor import GraphEditor


def prune_to_output(model: onnx.ModelProto, output: str) -> onnx.ModelProto:
    """Keep the nodes ``output`` depends on, that output only, and the inputs those nodes read
    (an unused graph input would still have to be fed to every session)."""
    model = copy_model(model)
    edit = GraphEditor(model)
    needed = needed_by([output], edit.producer)
    for node in edit.nodes():
        if id(node) not in needed:
            edit.remove(node)
    keep = edit.nodes()
    model = edit.commit()
    outs = [o for o in model.graph.output if o.name == output]
    del model.graph.output[:]
    model.graph.output.extend(outs)
    used = {t for n in keep for t in reads(n)} | {output}
    ins = [i for i in model.graph.input if i.name in used]
    del model.graph.input[:]
    model.graph.input.extend(ins)
    drop_unused_initializers(model)
    return model

