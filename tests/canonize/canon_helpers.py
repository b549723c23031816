"""Building small ONNX models with onnx.helper and comparing them before/after a canonization pass."""
from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
FLOAT = TensorProto.FLOAT
INT64 = TensorProto.INT64
RTOL, ATOL = 1e-5, 1e-6


def vi(name: str, shape, elem=FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def make_model(nodes, inputs, outputs, inits: dict | None = None, opset: int = OPSET) -> onnx.ModelProto:
    """A checked model; ``inits`` maps initializer name -> array."""
    tensors = [numpy_helper.from_array(np.asarray(v), k) for k, v in (inits or {}).items()]
    graph = helper.make_graph(list(nodes), "test", list(inputs), list(outputs), initializer=tensors)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def run(model: onnx.ModelProto, feeds: dict) -> dict[str, np.ndarray]:
    """Outputs by name; onnxruntime's own graph optimisations are off so only the pass is tested."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def assert_same_outputs(before: onnx.ModelProto, after: onnx.ModelProto, feeds: dict,
                        outputs: list[str] | None = None) -> None:
    """``after`` is a valid model whose outputs (by name) equal ``before``'s on ``feeds``."""
    onnx.checker.check_model(after)
    want, got = run(before, feeds), run(after, feeds)
    names = outputs if outputs is not None else list(want)
    for name in names:
        assert name in got, f"output {name!r} lost; after has {sorted(got)}"
        np.testing.assert_allclose(got[name], want[name], rtol=RTOL, atol=ATOL, err_msg=name)


def op_counts(model: onnx.ModelProto) -> Counter:
    return Counter(n.op_type for n in model.graph.node)


def init_names(model: onnx.ModelProto) -> set[str]:
    return {t.name for t in model.graph.initializer}


def init_value(model: onnx.ModelProto, name: str) -> np.ndarray:
    for t in model.graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    raise KeyError(name)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def randn(shape, seed: int = 0) -> np.ndarray:
    return rng(seed).standard_normal(shape).astype(np.float32)


def bn_params(prefix: str, channels: int, seed: int = 1) -> dict:
    """Non-trivial BN statistics: negative scales, nonzero means, variances away from 1."""
    r = rng(seed)
    return {
        f"{prefix}_scale": r.uniform(-2, 2, channels).astype(np.float32),
        f"{prefix}_bias": r.standard_normal(channels).astype(np.float32),
        f"{prefix}_mean": r.standard_normal(channels).astype(np.float32),
        f"{prefix}_var": r.uniform(0.3, 3.0, channels).astype(np.float32),
    }


def bn_node(prefix: str, x: str, y: str, epsilon: float = 1e-3) -> onnx.NodeProto:
    return helper.make_node("BatchNormalization",
                            [x, f"{prefix}_scale", f"{prefix}_bias", f"{prefix}_mean", f"{prefix}_var"], [y],
                            name=f"{prefix}", epsilon=epsilon)
