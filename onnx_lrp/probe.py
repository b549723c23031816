"""Shapes and dtypes of every tensor, read off one onnxruntime run at the compiled input shape.

Shape inference cannot always see through exporter-generated shape arithmetic; a real run
always knows. The batch is 1: handlers never bake the batch size into the graph.
"""
from __future__ import annotations

import numpy as np
import onnx

from .errors import InvalidInput
from .executor import CPU, make_session
from .screen import check_elements


def probe(model: onnx.ModelProto, input_name: str, sample_shape: tuple, label: str):
    """(shapes, dtypes) of every tensor the nodes produce, plus the input, at ``sample_shape``
    (batch included): from ONNX shape inference when it determines every tensor, else from a run."""
    _check_inputs(model, input_name, label)
    inferred = _infer(model, input_name, sample_shape, label)
    if inferred is not None:
        return inferred
    return _run(model, input_name, sample_shape, label)


def _infer(model: onnx.ModelProto, input_name: str, sample_shape: tuple, label: str):
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    del fixed.graph.value_info[:]
    for vi in fixed.graph.input:
        if vi.name == input_name:
            vi.type.tensor_type.ClearField("shape")
            for d in sample_shape:
                vi.type.tensor_type.shape.dim.add().dim_value = int(d)
    try:
        inferred = onnx.shape_inference.infer_shapes(fixed, strict_mode=True, data_prop=True)
    except Exception:
        _check_sizes(_partial_inference(fixed), model, sample_shape, label)  # before a run allocates
        return None
    infos = {vi.name: vi for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
    _check_sizes(infos, model, sample_shape, label)
    shapes = {input_name: tuple(sample_shape)}
    dtypes = {input_name: np.dtype(np.float32)}
    for node in model.graph.node:
        for out in node.output:
            if not out:
                continue
            info = _static(infos.get(out))
            if info is None:
                return None
            shapes[out], dtypes[out] = info
    return shapes, dtypes


def _partial_inference(fixed: onnx.ModelProto) -> dict:
    """What non-strict shape inference determines (a run finds the rest)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(fixed, data_prop=True)
    except Exception:
        return {}
    return {vi.name: vi for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}


def _check_sizes(infos: dict, model: onnx.ModelProto, sample_shape: tuple, label: str) -> None:
    """Refuse a tensor that inference sizes beyond the limit, naming it and its node, before
    onnxruntime tries to allocate it."""
    for node in model.graph.node:
        for out in node.output:
            info = _static(infos.get(out)) if out else None
            if info is not None:
                check_elements(info[0], f"tensor {out!r} (output of node {node.name!r}, {node.op_type}) at input "
                               f"shape {tuple(sample_shape)}", label)


def _static(vi):
    if vi is None or not vi.type.HasField("tensor_type"):
        return None
    tt = vi.type.tensor_type
    if not tt.HasField("shape") or not tt.elem_type:
        return None
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    if any(d is None or d < 0 for d in dims):
        return None
    return tuple(dims), onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)


def _run(model: onnx.ModelProto, input_name: str, sample_shape: tuple, label: str):
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
