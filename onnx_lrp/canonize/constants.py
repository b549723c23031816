"""Constant nodes become initializers, and nodes computed only from constants are folded.

Weights that an exporter routes through Transpose/Cast/Reshape nodes thereby become plain
initializers the op handlers can read.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from ..errors import TensorTooLarge
from ..screen import check_elements
from ._edit import copy_model, drop_unused_initializers
from .editor import GraphEditor

#: Ops never folded: random generators differ per run; Constant is handled directly.
_NEVER_FOLD = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
               "Bernoulli"}


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    model = copy_model(model)
    edit = GraphEditor(model)
    known = {t.name for t in model.graph.initializer}
    opset = [o for o in model.opset_import]
    for node in edit.nodes():
        if not _foldable(node, known, edit.inputs):
            continue
        try:
            values = _evaluate(node, edit, opset)
        except TensorTooLarge:
            raise
        except Exception:  # noqa: BLE001 - e.g. a string Constant or an op the evaluator lacks
            continue  # left in place: the graph still runs; a handler names it if it matters
        edit.remove(node)
        for name, value in zip(node.output, values):
            if name:
                edit.set_const(name, np.asarray(value))
                known.add(name)
    model = edit.commit()
    drop_unused_initializers(model)
    return model


def _foldable(node, known, graph_inputs) -> bool:
    if node.domain not in ("", "ai.onnx") or node.op_type in _NEVER_FOLD:
        return False
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
        return False  # If/Loop/Scan bodies may read outer-scope tensors that are not constants
    if node.op_type == "Constant":
        return True
    inputs = [t for t in node.input if t]
    return bool(inputs) and all(t in known and t not in graph_inputs for t in inputs)


def _evaluate(node, edit, opset) -> list:
    if node.op_type == "Constant":
        return [_constant_value(node)]
    feeds = {t: edit.const(t) for t in node.input if t}
    _check_output_sizes(node, feeds, opset)
    graph = onnx.helper.make_graph(
        [node], "fold",
        [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in feeds],
        [onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output if o])
    single = onnx.helper.make_model(graph, opset_imports=opset)
    return ReferenceEvaluator(single).run(None, feeds)


#: Inputs up to this size are given to shape inference as values (shapes, repeats, pads), larger
#: ones by their type and shape only (a weight is not copied to size a Transpose of it).
_VALUE_ELEMENTS = 1024


def _check_output_sizes(node, feeds, opset) -> None:
    """Refuse to fold a node whose outputs ONNX shape inference sizes beyond the limit (a
    ``ConstantOfShape`` or ``Expand`` of a hostile shape) before the evaluator allocates them."""
    small = [numpy_helper.from_array(v, n) for n, v in feeds.items() if v.size <= _VALUE_ELEMENTS]
    typed = [onnx.helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
             for n, v in feeds.items() if v.size > _VALUE_ELEMENTS]
    outputs = [onnx.helper.make_empty_tensor_value_info(o) for o in node.output if o]
    graph = onnx.helper.make_graph([node], "size", typed, outputs, initializer=small)
    try:
        inferred = onnx.shape_inference.infer_shapes(onnx.helper.make_model(graph, opset_imports=opset),
                                                     data_prop=True)
    except Exception:  # noqa: BLE001 - inference cannot size it: the evaluator runs as before
        return
    for vi in list(inferred.graph.output) + list(inferred.graph.value_info):
        dims = vi.type.tensor_type.shape.dim
        if vi.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            check_elements([d.dim_value for d in dims], f"tensor {vi.name!r} computed by node {node.name!r} "
                           f"({node.op_type}) from constants")


def _constant_value(node) -> np.ndarray:
    a = node.attribute[0]
    if a.name == "value":
        return numpy_helper.to_array(a.t)
    if a.name in ("value_float", "value_int"):
        return np.array(onnx.helper.get_attribute_value(a),
                        dtype=np.float32 if a.name == "value_float" else np.int64)
    if a.name in ("value_floats", "value_ints"):
        return np.array(onnx.helper.get_attribute_value(a),
                        dtype=np.float32 if a.name == "value_floats" else np.int64)
    raise ValueError(f"Constant node {node.name!r} uses attribute {a.name!r}, which onnx-lrp cannot fold")
