"""Emitting ONNX nodes and constants into the explainer graph under fresh names."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from .weights import WeightStore, make_initializer


class GraphBuilder:
    """Collects the nodes and initializers of the relevance subgraph.

    ``const`` deduplicates arrays by content key so a modified weight used by two passes is
    stored once. ``device`` is where the graph will run (``"cpu"`` or ``"cuda"``): a handler may
    emit different but equivalent ops where onnxruntime lacks a kernel on that device.
    """

    def __init__(self, taken: set[str], prefix: str = "lrp", store: WeightStore | None = None,
                 device: str = "cpu"):
        self.device = device
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._taken = set(taken)
        self._prefix = prefix
        self._counter = 0
        self._consts: dict[tuple, str] = {}
        self._by_identity: dict[int, tuple[np.ndarray, str]] = {}
        self._derived: dict[tuple, tuple[np.ndarray, str]] = {}
        self._store = store
        #: forward node name -> {output index: tensor name} the relevance sweep also needs
        self.extra_outputs: dict[str, dict[int, str]] = {}
        #: forward node name -> the nodes computing its outputs instead (see :meth:`in_forward`)
        self.forward_replacements: dict[str, list[onnx.NodeProto]] = {}

    def reuse(self, arrays: dict[str, np.ndarray]) -> None:
        """Let :meth:`const` refer to these existing initializers when handed the same array
        object, instead of storing a second copy of a (possibly huge) weight."""
        for name, arr in arrays.items():
            self._by_identity[id(arr)] = (arr, name)

    def claim(self, name: str) -> str:
        """``name`` itself when no tensor, node or earlier emitted name uses it, else a fresh
        variant ``name_1``, ``name_2``, ...: for the names the explainer shows its users."""
        candidate, i = name, 0
        while candidate in self._taken:
            i += 1
            candidate = f"{name}_{i}"
        self._taken.add(candidate)
        return candidate

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
        known = self._by_identity.get(id(array))
        if known is not None and known[0] is array and array.dtype == dtype:
            return known[1]
        arr = np.array(array, dtype=dtype)  # a copy that keeps 0-d scalars 0-d
        key = (arr.dtype.str, arr.shape, arr.tobytes()) if arr.size <= 4096 else None
        if key is not None and key in self._consts:
            return self._consts[key]
        name = self.fresh(hint)
        self.initializers.append(make_initializer(name, arr, self._store))
        if key is not None:
            self._consts[key] = name
        if isinstance(array, np.ndarray) and array.size > 4096:
            self._by_identity[id(array)] = (array, name)
        return name

    def forward_output(self, node, index: int, hint: str) -> str:
        """Output ``index`` of the model's own forward ``node`` (e.g. MaxPool's Indices), added to
        that node instead of computing it again."""
        if index < len(node.output) and node.output[index]:
            return node.output[index]
        wanted = self.extra_outputs.setdefault(node.name, {})
        if index not in wanted:
            wanted[index] = self.fresh(hint)
        return wanted[index]

    def in_forward(self, node, emit):
        """Replace the model's forward ``node`` by the nodes ``emit()`` emits (which must compute
        the node's outputs under their names, and may compute more); returns what ``emit`` returns,
        or None when the node was already replaced."""
        if node.name in self.forward_replacements:
            return None
        start = len(self.nodes)
        result = emit()
        self.forward_replacements[node.name] = self.nodes[start:]
        del self.nodes[start:]
        return result

    def derived_const(self, source: np.ndarray, tag: str, make) -> str:
        """``const(make(source))``, computed once per source array and tag."""
        key = (id(source), tag)
        if key not in self._derived:
            self._derived[key] = (source, self.const(make(source), tag))
        return self._derived[key][1]

    def ints(self, values, hint: str = "ints") -> str:
        return self.const(np.asarray(values, dtype=np.int64), hint, dtype=np.int64)

    # --- small composite emitters used by rules and handlers -----------------------------
    def stabilize(self, z: str, eps: float) -> str:
        """z + eps * sign(z), with sign(0) = +1 (Zennit's stabiliser)."""
        nonneg = self.op("GreaterOrEqual", [z, self.const(0.0)])
        shift = self.op("Where", [nonneg, self.const(eps), self.const(-eps)])
        return self.op("Add", [z, shift], hint="stab")

    def ratio(self, r: str, z: str, eps: float, sign: int = 0) -> str:
        """r / stab(z). With eps = 0 (LRP-0), where z = 0 the ratio is 0 instead of NaN.

        ``sign`` = +1 / -1 promises z >= 0 / z <= 0 (e.g. ZPlus's denominator), so the stabiliser
        is one Add. For z <= 0 it shifts z = 0 to -eps where Zennit shifts to +eps; there every
        contribution is 0, so the relevance is the same.
        """
        if eps and sign:
            return self.div(r, self.add(z, self.const(eps * sign)))
        if eps:
            return self.div(r, self.stabilize(z, eps))
        # r / 0 is ±inf or NaN in the Div; the Where replaces exactly those entries (one pass fewer
        # than dividing by a z made safe first)
        zero = self.op("Equal", [z, self.const(0.0)])
        return self.op("Where", [zero, self.const(0.0), self.div(r, z)], hint="ratio")

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
