"""The two patterns a recurrent cell adds to the gating products of :mod:`.gating`.

Arras et al. (2017, "Explaining recurrent neural network predictions in sentiment analysis";
2019, "Explaining and interpreting LSTMs") explain an LSTM with three kinds of steps: linear maps
(the dense rule), gates (signal-take-all: the gate gets nothing) and the cell update
``c = f⊙c' + i⊙g``, whose relevance is split between ``f⊙c'`` and ``i⊙g`` by the ε-rule.

==============  ====================================================  ========  ================
pattern         recognised as                                         category  default rule
==============  ====================================================  ========  ================
cell update     ``Add`` of two products that are gates (each a        cell      Norm (ε-rule
                signal times a [0, 1] gate): LSTM's ``f⊙c' + i⊙g``,             split; ε is the
                GRU's ``(1−z)⊙n + z⊙h'``                                        composite's
                                                                                ``cell_epsilon``)
state gate      ``Mul`` of a [0, 1] gate and a state that carries     gate      Pass: nothing to
                no relevance: a graph input (a fed initial state,               the gate; the
                ``f⊙c_0``), or a constant or fed one in a                       state's share is
                recurrence onnx-lrp unrolled                                    absorbed, as a
                (:mod:`onnx_lrp.canonize.unroll_rnn`)                           bias's
==============  ====================================================  ========  ================

Both VJPs are exact, so the Gradient composite sees the true gradient.
"""
from __future__ import annotations

from ..canonize.unroll_rnn import unrolled_from
from .base import CELL, GATE, Handler, unbroadcast
from .elementwise import SumHandler
from .gating import classify
from .registry import handles
from .structure import in_unit_interval, producer


@handles("Add", when=lambda node, g: is_cell_update(node, g))
class CellUpdateHandler(SumHandler):
    """``Add(gated, gated)``: a sum handled as a residual sum, under its own category."""

    category = CELL


@handles("Mul", when=lambda node, g: is_state_gate(node, g))
class StateGateHandler(Handler):
    """``Mul(gate, state)`` with only the gate carrying relevance."""

    category = GATE
    absorbs = True

    def relevant_inputs(self, node, g):
        return g.relevant_inputs(node)

    def vjp(self, b, node, g, grads, params):
        (gate,) = self.relevant_inputs(node, g)
        local = b.mul(grads[0], node.input[1 - gate])
        return [unbroadcast(b, local, g.shape(node.output[0]), g.shape(node.input[gate]))]


def is_state_gate(node, g) -> bool:
    if node.op_type != "Mul" or len(node.input) != 2:
        return False
    relevant = g.relevant_inputs(node)
    if len(relevant) != 1 or not in_unit_interval(g, node.input[relevant[0]]):
        return False
    # a state the unroller gated, or a state fed as a graph input; any other operand that carries no
    # relevance (a constant: an affine x·c) is left to the op's own handler
    if (unrolled_from(node) or {}).get("role") == "gate":
        return True
    return node.input[1 - relevant[0]] in {i.name for i in g.model.graph.input}


def is_cell_update(node, g) -> bool:
    if node.op_type != "Add" or len(node.input) != 2 or g.relevant_inputs(node) != [0, 1]:
        return False
    return all(_is_gated(producer(g, t), g) for t in node.input)


def _is_gated(node, g) -> bool:
    if node is None or node.op_type != "Mul":
        return False
    if is_state_gate(node, g):
        return True
    product = classify(node, g)
    return product is not None and product.category == GATE and product.signal is not None

