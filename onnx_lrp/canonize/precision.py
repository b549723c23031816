"""Models computed in float16, bfloat16 or float64 are explained in float32.

The explainer graph (forward pass + relevance sweep) is built for float32 tensors: its constants,
stabilisers and the relevance are float32. A model whose weights, inputs or casts are of another
floating-point type is therefore promoted (or, for float64, demoted) to float32: every
floating-point initializer, constant, cast target and declared tensor type becomes float32.
Float16 and bfloat16 values are exactly representable in float32, so the promoted model computes
the same function without the intermediate roundings; the explained output then differs from the
original forward by those roundings only (the note returned says so).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ..weights import make_initializer, store_of, tensor_value
from ._edit import copy_model

#: Floating-point element types that are rewritten to float32.
OTHER_FLOATS = {TensorProto.FLOAT16: "float16", TensorProto.BFLOAT16: "bfloat16", TensorProto.DOUBLE: "float64"}
#: Ops whose attribute names an output element type.
_DTYPE_ATTRIBUTES = {"Cast": "to", "EyeLike": "dtype", "RandomNormal": "dtype", "RandomUniform": "dtype",
                     "RandomNormalLike": "dtype", "RandomUniformLike": "dtype", "Bernoulli": "dtype"}


def float_types(model: onnx.ModelProto) -> set[str]:
    """Names of the non-float32 floating-point types ``model`` declares or computes in."""
    found = set()
    graph = model.graph
    for t in graph.initializer:
        found.add(t.data_type)
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        found.add(vi.type.tensor_type.elem_type)
    for node in graph.node:
        name = _DTYPE_ATTRIBUTES.get(node.op_type)
        for a in node.attribute:
            if a.name == name:
                found.add(a.i)
            elif a.type == onnx.AttributeProto.TENSOR:
                found.add(a.t.data_type)
    return {OTHER_FLOATS[t] for t in found if t in OTHER_FLOATS}


def to_float32(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str | None]:
    """``model`` computing in float32, and a note naming the types replaced (None: nothing to do)."""
    types = float_types(model)
    if not types:
        return model, None
    model = copy_model(model)
    _convert_graph(model.graph, store_of(model))
    listed = " and ".join(sorted(types))
    note = (f"the model computes in {listed}; it is explained in float32 (weights and casts converted): "
            f"the output differs from the {listed} forward pass by rounding only, and relevance is float32")
    return model, note


def _convert_graph(graph: onnx.GraphProto, store) -> None:
    inits = []
    for t in graph.initializer:
        if t.data_type in OTHER_FLOATS:
            t = make_initializer(t.name, tensor_value(t).astype(np.float32), store)
        inits.append(t)
    del graph.initializer[:]
    graph.initializer.extend(inits)
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        if vi.type.tensor_type.elem_type in OTHER_FLOATS:
            vi.type.tensor_type.elem_type = TensorProto.FLOAT
    for node in graph.node:
        dtype_attribute = _DTYPE_ATTRIBUTES.get(node.op_type)
        for a in node.attribute:
            if a.name == dtype_attribute and a.i in OTHER_FLOATS:
                a.i = TensorProto.FLOAT
            elif a.type == onnx.AttributeProto.TENSOR and a.t.data_type in OTHER_FLOATS:
                a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float32), a.t.name))
            elif a.type == onnx.AttributeProto.GRAPH:
                _convert_graph(a.g, store)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for sub in a.graphs:
                    _convert_graph(sub, store)
