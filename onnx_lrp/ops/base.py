"""The op handler interface.

A handler knows, for one family of ONNX ops, how to emit (as ONNX nodes) the op's forward pass
with substituted inputs and parameters, and its vector-Jacobian product (VJP). Rules are written
only against this interface, so they never branch on the op type.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from ..builder import GraphBuilder
from ..errors import UnsupportedOp
from ..graph import ModelGraph

#: Categories a composite maps to rules.
CONV, DENSE, AFFINE, ACTIVATION, SUM, AVGPOOL, MAXPOOL, ROUTE, BATCHNORM, GATE, NORMALIZE, PASS = (
    "convolution", "dense", "affine", "activation", "sum", "avgpool", "maxpool", "route",
    "batchnorm", "gate", "normalize", "pass")
CATEGORIES = (CONV, DENSE, AFFINE, ACTIVATION, SUM, AVGPOOL, MAXPOOL, ROUTE, BATCHNORM, GATE, NORMALIZE, PASS)


def attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def unsupported(node: onnx.NodeProto, why: str) -> UnsupportedOp:
    error = UnsupportedOp(
        f"node {node.name!r} (op type {node.op_type!r}): {why}. To proceed, name a rule for it: "
        f"onnx_lrp.Explainer(model, name_map={{{node.name!r}: onnx_lrp.rules.Pass()}}) passes its relevance "
        f"through unchanged (rules.Uniform() splits it equally over several inputs; type_map="
        f"{{{node.op_type!r}: ...}} covers every {node.op_type} node; on the command line: --rule "
        f"'{node.name}=Pass'), or re-export the model without it "
        "(`onnx-lrp inspect MODEL` lists every node that needs one)")
    error.reason = why  # the short form, for listings
    return error


class Handler:
    """Base class: a parameter-free op with a single relevant input unless overridden."""

    category = ROUTE

    def category_of(self, node: onnx.NodeProto, g: ModelGraph) -> str:
        """The composite category of this node (some families depend on the operands)."""
        return self.category

    def check(self, node: onnx.NodeProto, g: ModelGraph) -> None:
        """Raise :class:`UnsupportedOp` when this node's attributes cannot be handled."""

    def relevant_inputs(self, node: onnx.NodeProto, g: ModelGraph) -> list[int]:
        return g.relevant_inputs(node)

    def params(self, node: onnx.NodeProto, g: ModelGraph) -> dict[str, np.ndarray] | None:
        """``{'weight': W, 'bias': b}`` for ops with parameters, else None."""
        return None

    def forward(self, b: GraphBuilder, node: onnx.NodeProto, g: ModelGraph, inputs: list[str],
                params: dict | None) -> str:
        """Emit the op on ``inputs`` (replacing the relevant inputs, in order) and ``params``."""
        args = list(node.input)
        for idx, name in zip(self.relevant_inputs(node, g), inputs):
            args[idx] = name
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        return b.op(node.op_type, args, hint=node.op_type.lower(), domain=node.domain or None, **attrs)

    def vjp(self, b: GraphBuilder, node: onnx.NodeProto, g: ModelGraph, grads: list[str | None],
            params: dict | None) -> list[str]:
        """Gradients at the relevant inputs given gradients at the outputs (None = zero)."""
        raise unsupported(node, "no gradient is implemented for this op")


def static_dims(g: ModelGraph, tensor: str) -> tuple:
    """Probed shape; axis 0 is the batch and must not be baked into the graph."""
    return tuple(g.shape(tensor))


def unbroadcast(b: GraphBuilder, grad: str, grad_shape: tuple, target_shape: tuple) -> str:
    """Sum ``grad`` over the axes along which ``target`` was broadcast to ``grad_shape``."""
    lead = len(grad_shape) - len(target_shape)
    if lead:
        grad = b.op("ReduceSum", [grad, b.ints(list(range(lead)))], keepdims=0)
        grad_shape = grad_shape[lead:]
    axes = [i for i, d in enumerate(target_shape) if d == 1 and grad_shape[i] != 1]
    if axes:
        grad = b.op("ReduceSum", [grad, b.ints(axes)], keepdims=1)
    return grad
