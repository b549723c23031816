"""Undo the opset-13 Softmax adapter: ``Reshape(Softmax(Flatten(x, k)), Shape(x))`` -> ``Softmax(x, k)``.

Before opset 13 Softmax/LogSoftmax normalised over all axes from ``axis`` on, flattened; the
version converter that brings an older model to the compile opset spells that out as
Shape/Flatten/Softmax/Reshape. When every axis after ``k`` has size 1 (or ``k`` is the last axis)
the adapter is the plain Softmax over axis ``k``, which :func:`strip_softmax` can then remove
(PaddlePaddle's opset-11 exports, Caffe2's opset-9 ones).
"""
from __future__ import annotations

import onnx
from onnx import helper

from ._edit import attr, copy_model
from .editor import GraphEditor


def restore_softmax(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with each adapter replaced where shape inference shows it is a plain Softmax."""
    if not any(node.op_type in ("Softmax", "LogSoftmax") for node in model.graph.node):
        return copy_model(model)  # nothing to restore: skip the shape inference
    shapes = _shapes(model)
    model = copy_model(model)
    edit = GraphEditor(model)
    # every adapter is found on the unchanged graph, then rewritten
    found = [(reshape, match) for reshape in edit.nodes() if (match := _match(edit, reshape, shapes)) is not None]
    for reshape, (shape, flatten, softmax, x, axis) in found:
        for node in (shape, flatten, softmax, reshape):
            if node is not None:
                edit.remove(node)
        edit.insert_before(reshape, [helper.make_node(softmax.op_type, [x], [reshape.output[0]], name=softmax.name,
                                                      axis=axis)])
    return edit.commit()


def _match(edit, reshape, shapes):
    if reshape.op_type != "Reshape" or len(reshape.input) < 2:
        return None
    softmax = edit.producer(reshape.input[0])
    shape = edit.producer(reshape.input[1])
    if softmax is None or softmax.op_type not in ("Softmax", "LogSoftmax") or shape is None:
        return None
    flatten = edit.producer(softmax.input[0])
    if flatten is None or flatten.op_type != "Flatten" or shape.op_type != "Shape":
        return None
    x = flatten.input[0]
    if shape.input[0] != x or attr(softmax, "axis", -1) not in (1, -1) or attr(shape, "start") is not None:
        return None
    dims = shapes.get(x)
    if dims is None:
        return None
    k = attr(flatten, "axis", 1) % len(dims)
    if any(d != 1 for d in dims[k + 1:]):
        return None  # several axes after k: a softmax over all of them, not over axis k
    for t in (softmax.output[0], flatten.output[0]):
        if len(edit.consumers(t)) != 1 or edit.is_output(t):
            return None
    if any(n.op_type != "Reshape" for n in edit.consumers(shape.output[0])):
        return None
    only_here = len(edit.consumers(shape.output[0])) == 1 and not edit.is_output(shape.output[0])
    return (shape if only_here else None), flatten, softmax, x, k


def _shapes(model: onnx.ModelProto) -> dict[str, list]:
    """Tensor name -> dims (ints, or None where unknown) from ONNX shape inference."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        return {}
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        if vi.type.tensor_type.HasField("shape"):
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None
                               for d in vi.type.tensor_type.shape.dim]
    return shapes

