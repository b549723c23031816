"""Emitting ONNX nodes and constants into the explainer graph under fresh names."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


class GraphBuilder:
    """Collects the nodes and initializers of the relevance subgraph.

    ``const`` deduplicates arrays by content key so a modified weight used by two passes is
    stored once.
    """

    def __init__(self, taken: set[str], prefix: str = "lrp"):
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._taken = set(taken)
        self._prefix = prefix
        self._counter = 0
        self._consts: dict[tuple, str] = {}

    def fresh(self, hint: str) -> str:
        while True:
            self._counter += 1
            name = f"{self._prefix}/{hint}_{self._counter}"
            if name not in self._taken:
                self._taken.add(name)
                return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, n_out: int = 1,
           outputs: list[str] | None = None, **attrs):
        """Emit one node; returns its output name (or list of names when ``n_out`` > 1)."""
        outs = outputs or [self.fresh(hint or op_type) for _ in range(n_out)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=self.fresh(op_type), **attrs))
        return outs[0] if n_out == 1 and outputs is None else outs

    def const(self, array, hint: str = "const", dtype=np.float32) -> str:
        arr = np.ascontiguousarray(np.asarray(array, dtype=dtype))
        key = (arr.dtype.str, arr.shape, arr.tobytes()) if arr.size <= 4096 else None
        if key is not None and key in self._consts:
            return self._consts[key]
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(arr, name))
        if key is not None:
            self._consts[key] = name
        return name

    def ints(self, values, hint: str = "ints") -> str:
        return self.const(np.asarray(values, dtype=np.int64), hint, dtype=np.int64)

    # --- small composite emitters used by rules and handlers -----------------------------
    def stabilize(self, z: str, eps: float) -> str:
        """z + eps * sign(z), with sign(0) = +1 (Zennit's stabiliser)."""
        nonneg = self.op("GreaterOrEqual", [z, self.const(0.0)])
        shift = self.op("Where", [nonneg, self.const(eps), self.const(-eps)])
        return self.op("Add", [z, shift], hint="stab")

    def positive(self, x: str) -> str:
        return self.op("Relu", [x], hint="pos")

    def negative(self, x: str) -> str:
        return self.op("Min", [x, self.const(0.0)], hint="neg")

    def mul(self, a: str, b: str) -> str:
        return self.op("Mul", [a, b])

    def div(self, a: str, b: str) -> str:
        return self.op("Div", [a, b])

    def add(self, a: str, b: str) -> str:
        return self.op("Add", [a, b])

    def sub(self, a: str, b: str) -> str:
        return self.op("Sub", [a, b])

    def sum(self, terms: list[str], hint: str = "sum") -> str:
        return terms[0] if len(terms) == 1 else self.op("Sum", terms, hint=hint)

    def zeros_like(self, x: str) -> str:
        return self.op("Mul", [x, self.const(0.0)], hint="zeros")
