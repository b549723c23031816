"""Long chains of each op kind the canonization passes rewrite, for the scaling test and
``tools/bench_compile.py``.

==========================  =====================================================================
add_const, mul_const        ``Add(x, c)`` / ``Mul(x, c)`` with a constant ``c`` (elementwise affine)
dropout, identity           pass-through nodes that ``remove_identities`` removes (after one Relu)
relu                        no pass touches it (the floor: load, probe and compile alone)
conv_bn                     ``Conv`` then ``BatchNormalization`` (``fold_batchnorm``), n/2 pairs
conv_add                    ``Conv`` then ``Add(bias)`` (``fuse_bias``), n/2 pairs
conv_mul                    ``Conv`` then ``Mul(scale)`` (``fold_scale``), n/2 pairs
matmul_add                  ``MatMul`` then ``Add`` on 2-D data, fused to a Gemm, n/2 pairs
dense_bias                  ``MatMul`` then ``Add`` on 3-D data (``fuse_dense_bias``), n/2 pairs
==========================  =====================================================================
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
_ELEMENTWISE = {"add_const": "Add", "mul_const": "Mul", "dropout": "Dropout", "identity": "Identity",
                "relu": "Relu"}
_PAIRED = ("conv_bn", "conv_add", "conv_mul", "matmul_add", "dense_bias")
KINDS = tuple(_ELEMENTWISE) + _PAIRED


def chain(kind: str, n: int) -> onnx.ModelProto:
    """A valid model: input ``x`` through ``n`` nodes of ``kind`` to output ``y``."""
    rng = np.random.default_rng(0)
    if kind in _ELEMENTWISE:
        shape, inits, nodes = [1, 4], [], []
        if kind in ("dropout", "identity"):  # else the whole chain is an input -> output copy, kept
            nodes.append(helper.make_node("Relu", ["?"], ["?"], name="Relu_first"))
        for i in range(n - len(nodes)):
            nodes.append(_elementwise(kind, i, rng, inits))
    else:
        shape = {"matmul_add": [1, 4], "dense_bias": [1, 3, 4]}.get(kind, [1, 2, 3, 3])
        inits, nodes = [], []
        for i in range(n // 2):
            nodes += _pair(kind, i, rng, inits)
    _wire(nodes)
    graph = helper.make_graph(nodes, f"{kind}_{n}", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model


def _const(inits, name, array) -> str:
    inits.append(numpy_helper.from_array(np.asarray(array, np.float32), name))
    return name


def _elementwise(kind, i, rng, inits) -> onnx.NodeProto:
    op = _ELEMENTWISE[kind]
    inputs = ["?"]
    if kind == "add_const":
        inputs.append(_const(inits, f"c{i}", rng.uniform(-0.1, 0.1, 4)))
    elif kind == "mul_const":
        inputs.append(_const(inits, f"c{i}", rng.uniform(0.99, 1.01, 4)))
    return helper.make_node(op, inputs, ["?"], name=f"{op}_{i}")


def _pair(kind, i, rng, inits) -> list[onnx.NodeProto]:
    if kind in ("matmul_add", "dense_bias"):
        w = _const(inits, f"w{i}", np.eye(4) + rng.uniform(-0.01, 0.01, (4, 4)))
        b = _const(inits, f"b{i}", rng.uniform(-0.1, 0.1, 4))
        return [helper.make_node("MatMul", ["?", w], ["?"], name=f"MatMul_{i}"),
                helper.make_node("Add", ["?", b], ["?"], name=f"Add_{i}")]
    w = _const(inits, f"w{i}", np.eye(2).reshape(2, 2, 1, 1) + rng.uniform(-0.01, 0.01, (2, 2, 1, 1)))
    conv = helper.make_node("Conv", ["?", w], ["?"], name=f"Conv_{i}")
    if kind == "conv_bn":
        stats = [_const(inits, f"bn{i}_{s}", v) for s, v in
                 (("scale", rng.uniform(0.9, 1.1, 2)), ("shift", rng.uniform(-0.1, 0.1, 2)),
                  ("mean", rng.uniform(-0.1, 0.1, 2)), ("var", rng.uniform(0.9, 1.1, 2)))]
        return [conv, helper.make_node("BatchNormalization", ["?"] + stats, ["?"], name=f"BN_{i}")]
    op, values = ("Add", rng.uniform(-0.1, 0.1, 2)) if kind == "conv_add" else ("Mul", rng.uniform(0.9, 1.1, 2))
    return [conv, helper.make_node(op, ["?", _const(inits, f"k{i}", values.reshape(1, 2, 1, 1))], ["?"],
                                   name=f"{op}_{i}")]


def _wire(nodes) -> None:
    """Each node reads the previous node's output: x -> t0 -> t1 ... -> y."""
    previous = "x"
    for i, node in enumerate(nodes):
        node.input[0] = previous
        node.output[0] = previous = "y" if i == len(nodes) - 1 else f"t{i}"
