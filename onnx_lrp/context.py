"""The per-node view a rule works through: emit forward/VJP with modified inputs and params."""
from __future__ import annotations

import numpy as np
import onnx

from .builder import GraphBuilder
from .errors import CompositeError, UnsupportedOp
from .graph import ModelGraph
from .ops.base import Handler
from .ops.registry import lookup


class NodeContext:
    """What a rule may do with one node; results are tensor names in the explainer graph."""

    def __init__(self, b: GraphBuilder, g: ModelGraph, node: onnx.NodeProto, handler: Handler,
                 relevance: list[str | None], shared: "SharedTensors"):
        self.b, self.g, self.node, self.handler = b, g, node, handler
        self.R_all = relevance
        self._shared = shared
        self.inputs = [node.input[i] for i in handler.relevant_inputs(node, g)]
        self._params = None
        self._modified: dict = {}

    @property
    def R(self) -> str:
        if len(self.R_all) != 1 and any(r is not None for r in self.R_all[1:]):
            raise CompositeError(f"node {self.node.name!r} ({self.node.op_type}) has several outputs "
                                 "carrying relevance; only the Gradient rule can route them")
        return self.R_all[0]

    def params(self, modify=None) -> dict | None:
        """The node's parameters, changed by ``modify(name, array)`` when given (once per modifier:
        the forward pass and the VJP must share one copy of each modified weight). Unchanged
        parameters are None for parameter-free ops."""
        if self._params is None:
            self._params = self.handler.params(self.node, self.g)
        if modify is None:
            return self._params
        if self._params is None:
            raise CompositeError(
                f"node {self.node.name!r} ({self.node.op_type}) has no weights, so rules that modify "
                "weights (ZPlus, AlphaBeta, Gamma, Flat, WSquare, ZBox) cannot apply; use Epsilon, "
                "Norm, Pass or Gradient for it")
        key = getattr(modify, "key", modify)
        if key not in self._modified:
            self._modified[key] = {k: np.asarray(modify(k, v.astype(np.float64))).astype(np.float32)
                                   for k, v in self._params.items()}
        return self._modified[key]

    def forward(self, inputs: list[str] | None = None, modify=None) -> str:
        """The op's output on ``inputs`` with parameters changed by ``modify(name, array)``;
        the model's own output tensor when nothing is changed."""
        if inputs is None and modify is None:
            return self.node.output[0]
        return self.handler.forward(self.b, self.node, self.g, inputs or self.inputs, self.params(modify))

    def vjp(self, grad, modify=None) -> list[str]:
        grads = list(grad) if isinstance(grad, (list, tuple)) else [grad]
        return self.handler.vjp(self.b, self.node, self.g, grads, self.params(modify))

    def forward_shifted(self, x: str, modify, shift: float) -> str:
        """``f(x; modify(W), modify(b) + shift)``: a stabiliser ε folded into the bias of the
        denominator's own op instead of an Add over its output."""
        return self.handler.forward(self.b, self.node, self.g, [x], self._shifted(modify, shift))

    def forward_pair(self, modify, shift: float = 0.0) -> tuple[str, str]:
        """(the model's own output, ``f(x; modify(W), modify(b) + shift)``) on the node's own input
        x, computed by one op where the handler can (one Conv with both weights' output channels,
        :meth:`~onnx_lrp.ops.base.Handler.forward_beside`)."""
        params = self._shifted(modify, shift)
        beside = self.handler.forward_beside(self.b, self.node, self.g, self.params(), params)
        if beside is None:
            beside = self.handler.forward(self.b, self.node, self.g, self.inputs, params)
        return self.node.output[0], beside

    def _shifted(self, modify, shift: float) -> dict:
        params = self.params(modify)
        if not shift:
            return params
        bias = (params["bias"].astype(np.float64) + shift).astype(np.float32)
        return {**params, "bias": bias}

    # --- input transforms, shared between nodes reading the same tensor -------------------
    def positive(self, x: str) -> str:
        return x if self.nonnegative(x) else self._shared.get(("pos", x), lambda: self.b.positive(x))

    def negative(self, x: str) -> str:
        return self._shared.get(("neg", x), lambda: self.b.negative(x))

    def nonnegative(self, x: str) -> bool:
        return self._shared.nonnegative(self.g, x)

    def ones_like(self, x: str) -> str:
        """Ones shaped like one sample of ``x``; broadcasting covers the batch."""
        return self.b.const(np.ones(self._one_sample_shape(x), np.float32), "ones")

    def constant_like(self, x: str, value) -> str:
        shape = self._one_sample_shape(x)
        try:
            arr = np.broadcast_to(np.asarray(value, np.float32), shape)
        except ValueError as exc:
            raise CompositeError(f"bound of shape {np.shape(value)} does not broadcast to the input "
                                 f"{x!r} of node {self.node.name!r} with per-sample shape {shape}") from exc
        return self.b.const(np.ascontiguousarray(arr), "bound")

    def _one_sample_shape(self, x: str) -> tuple:
        shape = tuple(self.g.shape(x))
        return (1,) + shape[1:] if shape else shape


class SharedTensors:
    """Memo of tensors derived from activations (x⁺, x⁻) and of sign facts."""

    def __init__(self):
        self._memo: dict = {}
        self._nonneg: dict[str, bool] = {}

    def get(self, key, make):
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def nonnegative(self, g: ModelGraph, x: str) -> bool:
        if x not in self._nonneg:
            self._nonneg[x] = _nonnegative(g, x, self._nonneg)
        return self._nonneg[x]


def _nonnegative(g: ModelGraph, x: str, memo: dict) -> bool:
    """True when ``x`` is provably >= 0, as the handler of the op that produced it says (an
    optimisation only: it lets sign-splitting rules skip the x⁻ terms)."""
    name = g.producer.get(x)
    node = g.nodes.get(name) if name is not None else None
    handler = lookup(node, g) if node is not None else None
    if handler is None:
        return False

    def nonnegative(t: str) -> bool:
        if t not in memo:
            memo[t] = _nonnegative(g, t, memo)
        return memo[t]

    try:
        return handler.nonnegative_output(node, g, nonnegative)
    except UnsupportedOp:  # a node its handler refuses is reported by the compiler, not here
        return False
