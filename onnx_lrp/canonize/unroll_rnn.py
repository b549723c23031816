"""Unroll ``LSTM``, ``GRU`` and ``RNN`` nodes over the compiled sequence length into plain ops.

The recurrence becomes, per direction and time step, the ops the existing handlers and rules
already cover, so that the rules of Arras et al. (2017, "Explaining recurrent neural network
predictions in sentiment analysis"; 2019, "Explaining and interpreting LSTMs") apply:

- each gate's and candidate's pre-activation is one ``Gemm`` on ``Concat(x_t, h_{t-1})`` with the
  stacked constant weights ``[W; R]`` and the bias ``Wb + Rb`` (the composite's dense rule, ε by
  default: x and h share one denominator, as in Arras' ``lrp_linear``);
- gates are ``Sigmoid`` (or the node's activation) outputs multiplied onto a signal: the gate
  category (:mod:`onnx_lrp.ops.gating`), signal-take-all under Pass;
- the cell update ``c = f⊙c' + i⊙g`` (GRU: ``h = (1−z)⊙n + z⊙h'``) is an ``Add`` of two gated
  terms: the cell category, an ε-rule split between them (:mod:`onnx_lrp.ops.recurrent`);
- ``h = o⊙tanh(c)`` is a gate on ``tanh(c)``: c gets all of h's relevance.

The forward pass equals the op's (ONNX semantics: directions, ``layout``, ``clip``, activations,
``input_forget``, peepholes, GRU's ``linear_before_reset``) up to float rounding. Every emitted node
carries a JSON ``doc_string`` naming the recurrent node it came from and its role, so that
``inspect`` and the compiler can tell them apart (:func:`unrolled_from`).

An initial state that is absent or all zero (a constant, or ``ConstantOfShape`` of 0) is left
out of the recurrence; another constant or fed state enters the ``Gemm`` input like a bias and
the products ``f⊙c_0``, ``z⊙h_0`` are *state gates*: the gate gets no relevance and the state's
share is absorbed, as a bias's is.
"""
from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import helper

from ..errors import UnsupportedOp
from ..weights import tensor_value
from ._edit import copy_model, drop_unused_initializers
from .editor import NameAllocator

RECURRENT = ("LSTM", "GRU", "RNN")
_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
_DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}
#: activation -> (attributes taken from activation_alpha, from activation_beta) with ONNX defaults
_ACTIVATIONS = {
    "Sigmoid": ((), ()), "Tanh": ((), ()), "Relu": ((), ()), "Softsign": ((), ()), "Softplus": ((), ()),
    "LeakyRelu": ((("alpha", 0.01),), ()), "Elu": ((("alpha", 1.0),), ()),
    "HardSigmoid": ((("alpha", 0.2),), (("beta", 0.5),)),
}
_TAKES_ALPHA = {"LeakyRelu", "ThresholdedRelu", "Elu", "HardSigmoid", "ScaledTanh", "Affine"}
_TAKES_BETA = {"HardSigmoid", "ScaledTanh", "Affine"}
DOC_KEY = "onnx_lrp.unrolled"


def has_recurrent(model: onnx.ModelProto) -> bool:
    return any(n.op_type in RECURRENT and n.domain in ("", "ai.onnx") for n in model.graph.node)


def unrolled_from(node: onnx.NodeProto) -> dict | None:
    """``{"op": "LSTM", "node": name, "role": ...}`` for a node made by :func:`unroll_recurrent`."""
    if not node.doc_string.startswith("{"):
        return None
    try:
        info = json.loads(node.doc_string)
    except ValueError:
        return None
    return info.get(DOC_KEY) if isinstance(info, dict) else None


def unroll_recurrent(model: onnx.ModelProto, shapes: dict) -> onnx.ModelProto:
    """A copy of ``model`` with every LSTM/GRU/RNN node replaced by its unrolled recurrence.

    ``shapes`` maps tensor names to their shapes at the compiled input shape (from
    :func:`onnx_lrp.probe.probe`); the sequence length of each node is read off its input ``X``.
    """
    model = copy_model(model)
    consts = {t.name: t for t in model.graph.initializer}
    made_by = {t: n for n in model.graph.node for t in n.output if t}
    nodes = []
    for node in model.graph.node:
        if node.op_type in RECURRENT and node.domain in ("", "ai.onnx"):
            nodes.extend(_Unroller(node, model, consts, made_by, shapes).emit())
        else:
            nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    drop_unused_initializers(model)
    return model


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            value = helper.get_attribute_value(a)
            if isinstance(value, bytes):
                return value.decode()
            if isinstance(value, list):
                return [v.decode() if isinstance(v, bytes) else v for v in value]
            return value
    return default


class _Unroller:
    """Emits the unrolled nodes of one recurrent node."""

    def __init__(self, node, model, consts, made_by, shapes):
        self.node, self.op = node, node.op_type
        self.model, self.consts, self.made_by, self.shapes = model, consts, made_by, shapes
        self.nodes: list[onnx.NodeProto] = []
        self.inits = model.graph.initializer
        self.names = NameAllocator({t.name for t in model.graph.initializer} | {
            t for n in model.graph.node for t in list(n.input) + list(n.output)})
        self.hidden = int(_attr(node, "hidden_size"))
        self.layout = int(_attr(node, "layout", 0))
        self.clip = _attr(node, "clip")
        direction = _attr(node, "direction", "forward")
        if direction not in ("forward", "reverse", "bidirectional"):
            raise self._error(f"direction {direction!r} is not one of forward, reverse, bidirectional")
        self.directions = ["forward", "reverse"] if direction == "bidirectional" else [direction]
        self.activations = self._activations()
        self.linear_before_reset = int(_attr(node, "linear_before_reset", 0))
        self.input_forget = int(_attr(node, "input_forget", 0))
        self.role, self.step, self.steps = "input", None, 0
        self.node_names = NameAllocator(n.name for n in model.graph.node)
        self.stored: dict[tuple, str] = {}  # constants by content
        self.inputs: dict[tuple, str] = {}  # (x_t, h) -> their Concat, shared by the gates of a step

    # --- reading the node --------------------------------------------------------------
    def _error(self, why: str) -> UnsupportedOp:
        return UnsupportedOp(f"node {self.node.name!r} (op type {self.op!r}): {why}; onnx-lrp unrolls "
                             f"{self.op} nodes to explain them and cannot do it for this one")

    def _input(self, index: int) -> str:
        return self.node.input[index] if len(self.node.input) > index else ""

    def _const(self, index: int) -> np.ndarray | None:
        name = self._input(index)
        if not name:
            return None
        if name not in self.consts:
            return None
        return tensor_value(self.consts[name]).astype(np.float32)

    def _required_const(self, index: int, what: str) -> np.ndarray:
        value = self._const(index)
        if value is None:
            raise self._error(f"its {what} {self._input(index)!r} is computed at run time; onnx-lrp needs "
                              "constant weights")
        return value

    def _activations(self) -> list[tuple[str, dict]]:
        names = _attr(self.node, "activations")
        per_direction = len(_DEFAULT_ACTIVATIONS[self.op])
        if names is None:
            names = _DEFAULT_ACTIVATIONS[self.op] * len(self.directions)
        if len(names) != per_direction * len(self.directions):
            raise self._error(f"it lists {len(names)} activations, expected {per_direction * len(self.directions)}")
        alphas = list(_attr(self.node, "activation_alpha", []) or [])
        betas = list(_attr(self.node, "activation_beta", []) or [])
        result = []
        for name in names:
            if name not in _ACTIVATIONS:
                raise self._error(f"activation {name!r} is not supported (supported: {sorted(_ACTIVATIONS)})")
            # alpha/beta lists are consumed in order by the activations that take them (as onnxruntime)
            attrs = {}
            for (key, default), values, takes in ((a, alphas, _TAKES_ALPHA) for a in _ACTIVATIONS[name][0]):
                attrs[key] = values.pop(0) if values and name in takes else default
            for (key, default), values, takes in ((b, betas, _TAKES_BETA) for b in _ACTIVATIONS[name][1]):
                attrs[key] = values.pop(0) if values and name in takes else default
            result.append((name, attrs))
        return result

    def _state(self, index: int, direction: int) -> str | None:
        """The initial state of one direction as a [B, H] tensor, or None when absent or zero."""
        name = self._input(index)
        if not name or self._is_zero(name):
            return None
        axis = 1 if self.layout else 0
        value = self._const(index)
        if value is not None:
            return self._init(np.take(value, direction, axis=axis), "state")
        return self._emit("Gather", [name, self._ints(direction, scalar=True)], axis=axis)

    def _is_zero(self, name: str) -> bool:
        if name in self.consts:
            return not np.any(tensor_value(self.consts[name]))
        node = self.made_by.get(name)
        if node is not None and node.op_type == "ConstantOfShape":
            value = _attr(node, "value")
            return value is None or not np.any(onnx.numpy_helper.to_array(value))
        if node is not None and node.op_type == "Expand" and node.input[0] in self.consts:
            return not np.any(tensor_value(self.consts[node.input[0]]))
        return False

    def _check_lengths(self, steps: int) -> None:
        name = self._input(4)
        if not name:
            return
        lengths = self._const(4)
        if lengths is None:
            raise self._error(f"its sequence_lens {name!r} is computed at run time; onnx-lrp unrolls at a fixed "
                              "length: export without sequence_lens or with constant lengths")
        if np.any(lengths.astype(np.int64) != steps):
            raise self._error(f"its sequence_lens {lengths.astype(np.int64).tolist()} differ from the sequence "
                              f"length {steps}; onnx-lrp unrolls sequences of one length only: pad or cut the "
                              "sequences to one length and export without sequence_lens")

    # --- emitting ----------------------------------------------------------------------
    def _fresh(self, hint: str, names: NameAllocator | None = None) -> str:
        return (self.names if names is None else names).fresh(f"{self.node.name}/{self.step or ''}{hint}")

    def _doc(self) -> str:
        return json.dumps({DOC_KEY: {"op": self.op, "node": self.node.name, "role": self.role,
                                     "steps": self.steps, "direction": "/".join(self.directions)}})

    def _emit(self, op_type: str, inputs: list[str], outputs: list[str] | None = None, n_out: int = 1,
              hint: str | None = None, **attrs) -> str | list[str]:
        outs = outputs or [self._fresh((hint or op_type.lower()) + (f"_{i}" if n_out > 1 else ""))
                           for i in range(n_out)]
        node = helper.make_node(op_type, inputs, outs, name=self._fresh(hint or op_type, self.node_names), **attrs)
        node.doc_string = self._doc()
        self.nodes.append(node)
        return outs[0] if n_out == 1 and outputs is None else outs

    def _init(self, array: np.ndarray, hint: str, dtype=np.float32) -> str:
        """A constant, stored once however many steps use it (the weights repeat every step)."""
        array = np.ascontiguousarray(array, dtype=dtype) if np.ndim(array) else np.asarray(array, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self.stored:
            step, self.step = self.step, None  # named after the node, not the first step using it
            name = self._fresh(hint)
            self.step = step
            self.inits.append(onnx.numpy_helper.from_array(array, name))
            self.consts[name] = self.inits[-1]
            self.stored[key] = name
        return self.stored[key]

    def _ints(self, values, scalar: bool = False) -> str:
        return self._init(np.asarray(values if scalar else list(np.atleast_1d(values)), np.int64), "axes", np.int64)

    def _activate(self, x: str, which: int, direction: int, hint: str, clip: bool = True) -> str:
        if self.clip is not None and clip:
            x = self._emit("Clip", [x, self._init(np.float32(-self.clip), "clip_min"),
                                    self._init(np.float32(self.clip), "clip_max")], hint=hint + "_clipped")
        name, attrs = self.activations[direction * len(_DEFAULT_ACTIVATIONS[self.op]) + which]
        return self._emit(name, [x], hint=hint, **attrs)

    def _linear(self, x: str, h: str | None, w: np.ndarray, r: np.ndarray, bias: np.ndarray, hint: str) -> str:
        """``x·wᵀ + h·rᵀ + bias`` as one Gemm on Concat(x, h) (one denominator for x and h)."""
        self.role = "linear"
        if h is None:
            inp, weight = x, w.T
        else:
            if (x, h) not in self.inputs:
                self.inputs[(x, h)] = self._emit("Concat", [x, h], axis=1, hint="x_h")
            inp = self.inputs[(x, h)]
            weight = np.concatenate([w.T, r.T], axis=0)
        return self._emit("Gemm", [inp, self._init(weight, hint + "_W"), self._init(bias, hint + "_B")], hint=hint)

    # --- the recurrences ---------------------------------------------------------------
    def emit(self) -> list[onnx.NodeProto]:
        x = self.node.input[0]
        steps = self.steps = int(self.shapes[x][1 if self.layout else 0])
        self._check_lengths(steps)
        w, r = self._required_const(1, "W"), self._required_const(2, "R")
        gates, hsz = _GATES[self.op], self.hidden
        b = self._const(3)
        if self._input(3) and b is None:
            raise self._error(f"its B {self._input(3)!r} is computed at run time; onnx-lrp needs constant weights")
        b = np.zeros((len(self.directions), 2 * gates * hsz), np.float32) if b is None else b
        peep = self._const(7) if self.op == "LSTM" else None
        if self.op == "LSTM" and self._input(7) and peep is None:
            raise self._error("its peephole weights P are computed at run time")
        self.role = "input"
        # inside the recurrence every tensor is batch-first ([B, ...]); a time-major X is transposed
        batch_first = x if self.layout else self._emit("Transpose", [x], perm=[1, 0, 2], hint="x_batch_first")
        if steps == 1:
            xs = [self._emit("Squeeze", [batch_first, self._ints(1)], hint="x_t0")]
        else:
            pieces = self._emit("Split", [batch_first, self._ints([1] * steps)], n_out=steps, axis=1,
                                hint="x_split")
            xs = [self._emit("Squeeze", [p, self._ints(1)], hint=f"x_t{t}") for t, p in enumerate(pieces)]
        outputs = {"Y": [], "Y_h": [], "Y_c": []}
        for d, direction in enumerate(self.directions):
            params = (w[d], r[d], b[d, :gates * hsz], b[d, gates * hsz:], None if peep is None else peep[d])
            h, c = self._state(5, d), self._state(6, d) if self.op == "LSTM" else None
            order = range(steps) if direction == "forward" else range(steps - 1, -1, -1)
            ys = [None] * steps
            for t in order:
                self.step = f"{direction}/t{t}/"
                h, c = self._cell(xs[t], h, c, d, params)
                ys[t] = h
            self.step = f"{direction}/"
            outputs["Y"].append(ys)
            outputs["Y_h"].append(h)
            outputs["Y_c"].append(c)
        self.step, self.role = None, "output"
        self._outputs(outputs, steps)
        return self.nodes

    def _cell(self, x, h, c, d, params):
        return {"LSTM": self._lstm, "GRU": self._gru, "RNN": self._rnn}[self.op](x, h, c, d, params)

    def _rnn(self, x, h, c, d, params):
        w, r, wb, rb, _ = params
        pre = self._linear(x, h, w, r, wb + rb, "h_pre")
        self.role = "activation"
        return self._activate(pre, 0, d, "h"), None

    def _lstm(self, x, h, c, d, params):
        w, r, wb, rb, peep = params
        hsz = self.hidden
        part = {k: slice(i * hsz, (i + 1) * hsz) for i, k in enumerate("iofc")}
        pre = {k: self._linear(x, h, w[part[k]], r[part[k]], wb[part[k]] + rb[part[k]], f"{k.replace('c', 'g')}_pre")
               for k in ("i", "f", "c", "o")}
        if peep is not None and c is not None:
            for k, p in (("i", peep[:hsz]), ("f", peep[2 * hsz:])):
                pre[k] = self._peephole(pre[k], c, p, k)
        self.role = "gate"
        i = self._activate(pre["i"], 0, d, "i")
        if self.input_forget:
            f = self._emit("Sub", [self._init(np.float32(1.0), "one"), i], hint="f")
        else:
            f = self._activate(pre["f"], 0, d, "f")
        self.role = "activation"
        g = self._activate(pre["c"], 1, d, "g")
        self.role = "gate"
        update = self._emit("Mul", [i, g], hint="i_g")
        if c is not None:
            kept = self._emit("Mul", [f, c], hint="f_c")
            self.role = "cell"
            c = self._emit("Add", [kept, update], hint="c")
        else:
            c = update
        if peep is not None:
            pre["o"] = self._peephole(pre["o"], c, peep[hsz:2 * hsz], "o")
        self.role = "gate"
        o = self._activate(pre["o"], 0, d, "o")
        self.role = "activation"
        hc = self._activate(c, 2, d, "tanh_c", clip=False)  # onnxruntime clips the gates' inputs, not c
        self.role = "gate"
        return self._emit("Mul", [o, hc], hint="h"), c

    def _peephole(self, pre, c, p, k):
        self.role = "linear"
        return self._emit("Add", [pre, self._emit("Mul", [c, self._init(p, f"P{k}")], hint=f"{k}_peep")],
                          hint=f"{k}_pre_peep")

    def _gru(self, x, h, c, d, params):
        w, r, wb, rb, _ = params
        hsz = self.hidden
        part = {k: slice(i * hsz, (i + 1) * hsz) for i, k in enumerate("zrh")}
        z_pre, r_pre = (self._linear(x, h, w[part[k]], r[part[k]], wb[part[k]] + rb[part[k]], f"{k}_pre")
                        for k in "zr")
        self.role = "gate"
        z, reset = self._activate(z_pre, 0, d, "z"), self._activate(r_pre, 0, d, "r")
        wn, rn, wbn, rbn = w[part["h"]], r[part["h"]], wb[part["h"]], rb[part["h"]]
        if self.linear_before_reset:
            n_pre = self._linear(x, None, wn, None, wbn, "n_x")
            if h is not None:
                recurrent = self._linear(h, None, rn, None, rbn, "n_h")
            else:  # h = 0: r ⊙ Rbh is a gated bias (a state gate)
                recurrent = self._init(rbn[None, :], "n_h_bias") if np.any(rbn) else None
            if recurrent is not None:
                self.role = "gate"
                gated = self._emit("Mul", [reset, recurrent], hint="r_n_h")
                self.role = "linear"
                n_pre = self._emit("Add", [n_pre, gated], hint="n_pre")
        else:
            gated = None
            if h is not None:
                self.role = "gate"
                gated = self._emit("Mul", [reset, h], hint="r_h")
            n_pre = self._linear(x, gated, wn, rn, wbn + rbn, "n_pre")
        self.role = "activation"
        n = self._activate(n_pre, 1, d, "n")
        self.role = "gate"
        keep = self._emit("Sub", [self._init(np.float32(1.0), "one"), z], hint="one_minus_z")
        new = self._emit("Mul", [keep, n], hint="z_n")
        if h is None:
            return new, None
        kept = self._emit("Mul", [z, h], hint="z_h")
        self.role = "cell"
        return self._emit("Add", [new, kept], hint="h"), None

    def _outputs(self, outputs: dict, steps: int) -> None:
        """Y, Y_h, Y_c in the node's layout, under the node's own output names.

        Built batch-first (layout 1: Y [B, T, D, H], Y_h [B, D, H]) and transposed to layout 0
        (Y [T, D, B, H], Y_h [D, B, H]) last, so no emitted Concat runs along the batch axis."""
        for index, key in enumerate(("Y", "Y_h", "Y_c")):
            if len(self.node.output) <= index or not self.node.output[index]:
                continue
            target = self.node.output[index]
            if key == "Y":
                per_step = []
                for t in range(steps):
                    cells = [self._emit("Unsqueeze", [ys[t], self._ints([1, 2])], hint=f"y_t{t}")
                             for ys in outputs["Y"]]
                    per_step.append(self._concat(cells, 2, f"y_t{t}_dirs"))
                stacked, perm = self._concat(per_step, 1, "y"), [1, 2, 0, 3]
            else:
                if any(s is None for s in outputs[key]):
                    raise self._error(f"its output {key} is requested on a sequence of length 0")
                states = [self._emit("Unsqueeze", [s, self._ints(1)], hint=key.lower()) for s in outputs[key]]
                stacked, perm = self._concat(states, 1, key.lower()), [1, 0, 2]
            if self.layout:
                self._rename(stacked, target)
            else:
                self._emit("Transpose", [stacked], outputs=[target], perm=perm)

    def _concat(self, parts: list[str], axis: int, hint: str) -> str:
        return parts[0] if len(parts) == 1 else self._emit("Concat", parts, axis=axis, hint=hint)

    def _rename(self, tensor: str, target: str) -> None:
        """Let the node that made ``tensor`` (a fresh, unconsumed output) write ``target``."""
        for node in reversed(self.nodes):
            for i, out in enumerate(node.output):
                if out == tensor:
                    node.output[i] = target
                    return
        raise AssertionError(f"{tensor!r} was not made by the unrolled nodes")
