"""Precision variants of a float32 model: float16 / bfloat16 / float64 throughout, float16 as
onnxruntime's converter writes it, and QDQ quantized (onnxruntime's static quantizer)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

VARIANTS = ("float16", "bfloat16", "float64", "float16-casts", "qdq")
_TYPES = {"float16": TensorProto.FLOAT16, "bfloat16": TensorProto.BFLOAT16, "float64": TensorProto.DOUBLE}


def make_variant(model: onnx.ModelProto, variant: str, calibration: np.ndarray) -> onnx.ModelProto:
    if variant in _TYPES:
        return convert_all(model, _TYPES[variant])
    if variant == "float16-casts":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        return topological(convert_float_to_float16(model, keep_io_types=True))
    if variant == "qdq":
        return quantize_qdq(model, calibration)
    raise ValueError(variant)


def convert_all(model: onnx.ModelProto, elem: int) -> onnx.ModelProto:
    """Every float32 weight, constant, declared tensor and Cast target becomes ``elem``."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(elem)
    g = out.graph
    inits = [_convert(t, elem, dtype) for t in g.initializer]
    del g.initializer[:]
    g.initializer.extend(inits)
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT:
            vi.type.tensor_type.elem_type = elem
    for node in g.node:
        for a in node.attribute:
            if node.op_type == "Cast" and a.name == "to" and a.i == TensorProto.FLOAT:
                a.i = elem
            elif a.type == onnx.AttributeProto.TENSOR and a.t.data_type == TensorProto.FLOAT:
                a.t.CopyFrom(_convert(a.t, elem, dtype))
    return out


def _convert(t: onnx.TensorProto, elem: int, dtype) -> onnx.TensorProto:
    if t.data_type != TensorProto.FLOAT:
        return t
    value = numpy_helper.to_array(t)
    if elem == TensorProto.BFLOAT16:
        return onnx.helper.make_tensor(t.name, elem, value.shape, value.ravel().tolist())
    return numpy_helper.from_array(value.astype(dtype), t.name)


def quantize_qdq(model: onnx.ModelProto, calibration: np.ndarray, per_channel: bool = False,
                 operators: bool = False) -> onnx.ModelProto:
    """``quantize_static`` in QDQ format (uint8 activations, int8 weights), calibrated on ``calibration``;
    ``operators=True``: the integer-only QOperator format (QLinearConv, QLinearMatMul) instead."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    name = model.graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{name: x[None]} for x in calibration])

        def get_next(self):
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "qdq.onnx"
        onnx.save(model, src)
        quantize_static(src, dst, Reader(), quant_format=QuantFormat.QOperator if operators else QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=per_channel)
        return onnx.load(dst)


def topological(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with its nodes sorted topologically (onnxruntime's float16 converter appends the
    Casts it inserts at the end of the node list, which the ONNX checker refuses)."""
    produced = {o: i for i, n in enumerate(model.graph.node) for o in n.output}
    order, done = [], set()

    def visit(i):
        if i in done:
            return
        done.add(i)
        for t in model.graph.node[i].input:
            if t in produced:
                visit(produced[t])
        order.append(i)

    for i in range(len(model.graph.node)):
        visit(i)
    nodes = [model.graph.node[i] for i in order]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model
