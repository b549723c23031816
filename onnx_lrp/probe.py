"""Shapes and dtypes of every tensor, read off one onnxruntime run at the compiled input shape.

Shape inference cannot always see through exporter-generated shape arithmetic; a real run
always knows. The batch is 1: handlers never bake the batch size into the graph.
"""
from __future__ import annotations

import numpy as np
import onnx

from .errors import InvalidInput
from .executor import CPU, make_session


def probe(model: onnx.ModelProto, input_name: str, sample_shape: tuple, label: str):
    """Run ``model`` on one random sample of ``sample_shape`` (batch included) and return
    (shapes, dtypes) for every tensor the nodes produce, plus the input."""
    _check_inputs(model, input_name, label)
    probe_model = onnx.ModelProto()
    probe_model.CopyFrom(model)
    wanted = [t for n in probe_model.graph.node for t in n.output if t]
    known = {o.name for o in probe_model.graph.output}
    probe_model.graph.output.extend(onnx.ValueInfoProto(name=t) for t in wanted if t not in known)
    del probe_model.graph.value_info[:]
    x = np.random.default_rng(0).standard_normal(sample_shape).astype(np.float32)
    try:
        session = make_session(probe_model, [CPU], optimize=False)
        names = [o.name for o in session.get_outputs()]
        values = session.run(names, {input_name: x})
    except Exception as exc:
        raise InvalidInput(f"{label!r} cannot run on an input of shape {tuple(sample_shape)} "
                           f"({type(exc).__name__}: {exc}); check the input shape the model expects") from exc
    shapes = {input_name: tuple(sample_shape)}
    dtypes = {input_name: np.dtype(np.float32)}
    for name, value in zip(names, values):
        value = np.asarray(value)
        shapes[name], dtypes[name] = value.shape, value.dtype
    return shapes, dtypes


def _check_inputs(model: onnx.ModelProto, input_name: str, label: str) -> None:
    """The model is pruned to the explained output: its inputs are exactly what that output reads."""
    inputs = [i.name for i in model.graph.input]
    output = model.graph.output[0].name if model.graph.output else "?"
    if input_name not in inputs:
        raise InvalidInput(f"output {output!r} of {label!r} does not depend on input {input_name!r}; "
                           "nothing to explain: choose another output= or input_name=")
    others = [name for name in inputs if name != input_name]
    if others:
        raise InvalidInput(f"output {output!r} of {label!r} also reads the graph input(s) {others!r} besides "
                           f"{input_name!r}; onnx-lrp explains one input and cannot supply the others: explain "
                           "an output that depends on one input only, or export the model with the others "
                           "as constants")
