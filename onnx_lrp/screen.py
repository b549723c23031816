"""Refuse hostile models before they exhaust memory or the stack.

A model file of a few bytes can declare a weight of 10¹² elements, fold a ``ConstantOfShape`` into
one, or nest If/Loop bodies deeper than protobuf can read back. Each is refused with an error
naming the tensor or node, before anything is allocated or walked recursively.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import onnx

from .errors import ModelLoadError, TensorTooLarge

#: Most elements one tensor may have (8 GiB of float32); the largest weights of current models
#: (embedding tables of ~10⁹ elements) are well below it.
MAX_TENSOR_ELEMENTS = 2 ** 31
#: Deepest nesting of subgraphs (an If inside an If ...): protobuf reads messages at most 100
#: levels deep, about 31 nested subgraphs, so a deeper model could not be saved and read back.
MAX_SUBGRAPH_DEPTH = 24


def screen(model: onnx.ModelProto, label: str) -> None:
    """Raise :class:`ModelLoadError` for subgraphs nested deeper than :data:`MAX_SUBGRAPH_DEPTH`,
    :class:`TensorTooLarge` for an initializer or Constant declaring more than
    :data:`MAX_TENSOR_ELEMENTS` elements, and :class:`ModelLoadError` for an initializer whose
    stored bytes do not match its dims. Reads no tensor data; walks without recursion."""
    stack = [(model.graph, 0, None)]
    while stack:
        graph, depth, owner = stack.pop()
        if depth > MAX_SUBGRAPH_DEPTH:
            raise ModelLoadError(
                f"node {owner.name!r} ({owner.op_type}) of {label!r} nests subgraphs {depth} deep; onnx-lrp reads "
                f"at most {MAX_SUBGRAPH_DEPTH} levels of If/Loop/Scan bodies: re-export the model with the control "
                "flow unrolled or simplified")
        for tensor in graph.initializer:
            _check_declared(tensor, f"initializer {tensor.name!r}", label)
        for node in graph.node:
            for a in node.attribute:
                if a.type == onnx.AttributeProto.TENSOR:
                    _check_declared(a.t, f"attribute {a.name!r} of node {node.name!r} ({node.op_type})", label)
                elif a.type == onnx.AttributeProto.GRAPH:
                    stack.append((a.g, depth + 1, node))
                elif a.type == onnx.AttributeProto.GRAPHS:
                    stack.extend((g, depth + 1, node) for g in a.graphs)


def check_elements(shape: Iterable[int], what: str, label: str | None = None) -> None:
    """Raise :class:`TensorTooLarge` when a tensor of ``shape`` would exceed the limit."""
    shape = [int(d) for d in shape]
    count = math.prod(shape)
    if count > MAX_TENSOR_ELEMENTS:
        where = "" if label is None else f" of {label!r}"
        raise TensorTooLarge(
            f"{what}{where} has shape {tuple(int(d) for d in shape)}: {count:,} elements, more than the "
            f"{MAX_TENSOR_ELEMENTS:,} onnx-lrp allocates for one tensor; is the model (or the input shape) "
            "what you meant?")


def _check_declared(tensor: onnx.TensorProto, what: str, label: str) -> None:
    if any(d < 0 for d in tensor.dims):
        raise ModelLoadError(f"{what} of {label!r} declares negative dims {list(tensor.dims)}")
    check_elements(tensor.dims, what, label)
    if tensor.data_location == onnx.TensorProto.EXTERNAL or not tensor.HasField("raw_data"):
        return
    itemsize = _itemsize(tensor.data_type)
    if itemsize and len(tensor.raw_data) != math.prod(tensor.dims) * itemsize:
        raise ModelLoadError(
            f"{what} of {label!r} declares shape {tuple(tensor.dims)} ({math.prod(tensor.dims):,} elements of "
            f"{itemsize} bytes) but stores {len(tensor.raw_data):,} bytes; the file is damaged or was written wrongly")


def _itemsize(data_type: int) -> int | None:
    """Bytes per element of a fixed-width type; None for strings and sub-byte types."""
    if data_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
        return None
    try:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(data_type))
    except Exception:  # noqa: BLE001 - a type this onnx version cannot map
        return None
    if dtype.kind in "OUSV" or data_type in _SUB_BYTE:
        return None
    return dtype.itemsize


_SUB_BYTE = {getattr(onnx.TensorProto, name) for name in ("INT4", "UINT4", "FLOAT4E2M1", "INT2", "UINT2")
             if hasattr(onnx.TensorProto, name)}
