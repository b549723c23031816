"""The ``light_*`` models shipped inside the onnx package, made explainable (no torch).

They are Caffe2 exports (opset 9, IR 3: weights listed as graph inputs, LRN, Sum, Dropout with a
mask output, BatchNormalization followed by a second per-channel Mul/Add) whose large weights are
``ConstantOfShape(0.02)`` placeholders. :func:`load_light` replaces every placeholder with a
seeded random initializer shaped as the placeholder says (He-normal for Conv/Gemm weights,
U[0.5, 1.5] for scales, U[-0.2, 0.2] for shifts and biases, mean N(0, 0.1) and variance
U[0.5, 1.5] for BatchNormalization), keeps the small real initializers, and keeps every weight
listed as a graph input, as IR 3 requires.
"""
from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import helper, numpy_helper

LIGHT_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")


def available() -> list[str]:
    """Names (without ``light_`` and ``.onnx``) of the light models in the installed onnx."""
    if not os.path.isdir(LIGHT_DIR):
        return []
    return sorted(f[len("light_"):-len(".onnx")] for f in os.listdir(LIGHT_DIR)
                  if f.startswith("light_") and f.endswith(".onnx"))


def load_light(name: str, seed: int = 0) -> onnx.ModelProto:
    model = onnx.load(os.path.join(LIGHT_DIR, f"light_{name}.onnx"))
    rng = np.random.default_rng(seed)
    shapes = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.name.endswith("__SHAPE")}
    real = [t for t in model.graph.initializer if t.name not in shapes]
    uses = _uses(model)
    generated, kept = [], []
    for node in model.graph.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in shapes:
            shape = tuple(int(d) for d in shapes[node.input[0]])
            generated.append(numpy_helper.from_array(_weight(node.output[0], shape, uses, rng), node.output[0]))
        else:
            kept.append(node)
    del model.graph.node[:]
    model.graph.node.extend(kept)
    del model.graph.initializer[:]
    model.graph.initializer.extend(real + generated)
    inputs = [vi for vi in model.graph.input if vi.name not in shapes]
    listed = {vi.name for vi in inputs}
    inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in generated
               if t.name not in listed]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    return model


def data_input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    constants = {t.name for t in model.graph.initializer}
    return next(vi for vi in model.graph.input if vi.name not in constants)


def sample(model: onnx.ModelProto, seed: int = 1) -> np.ndarray:
    shape = [d.dim_value for d in data_input(model).type.tensor_type.shape.dim]
    return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)


def _uses(model):
    uses = {}
    for node in model.graph.node:
        for index, tensor in enumerate(node.input):
            uses.setdefault(tensor, []).append((node, index))
    return uses


def _weight(name, shape, uses, rng) -> np.ndarray:
    node, index = (uses.get(name) or [(None, None)])[0]
    while node is not None and node.op_type in ("Unsqueeze", "Reshape") and index == 0:
        node, index = (uses.get(node.output[0]) or [(None, None)])[0]  # Caffe2's per-channel Mul/Add
    op = node.op_type if node is not None else None
    if op in ("Conv", "Gemm") and index == 1:
        fan_in = int(np.prod(shape[1:]))
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
    if op == "BatchNormalization":
        low_high = {1: (0.5, 1.5), 2: (-0.2, 0.2), 4: (0.5, 1.5)}
        if index == 3:
            return (rng.standard_normal(shape) * 0.1).astype(np.float32)
        return rng.uniform(*low_high[index], shape).astype(np.float32)
    if op == "Mul":
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    return rng.uniform(-0.2, 0.2, shape).astype(np.float32)


__all__ = ["available", "load_light", "data_input", "sample", "LIGHT_DIR"]
