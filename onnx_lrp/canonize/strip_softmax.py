"""Explain scores, not probabilities: a trailing squasher is removed.

Squashers: ``Softmax``/``LogSoftmax`` over any axis, ``Sigmoid``, and a softmax written out as
``Exp(x) / ReduceSum(Exp(x))`` (with or without the subtracted maximum). Only pure data movement
(Reshape, Transpose, Squeeze, Unsqueeze, Flatten, Identity, Slice) may separate it from the
explained output; it then reads the squasher's input instead, so the output keeps its name and
shape but holds the scores.
"""
from __future__ import annotations

import onnx

from ._edit import copy_model
from .editor import GraphEditor

_SQUASHERS = ("Softmax", "LogSoftmax", "Sigmoid")
#: ops that only move data from their first input (their other inputs are shapes, bounds, axes)
_MOVES = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Slice")
#: between Exp and its ReduceSum, or the maximum and its Sub: broadcasting and reshaping only
_PLUMBING = ("Reshape", "Expand", "Unsqueeze", "Squeeze", "Identity", "Cast", "Max")


def strip_softmax(model: onnx.ModelProto, output: str) -> tuple[onnx.ModelProto, str, str | None]:
    """Return the model, the new explained output name and the stripped op type (or None)."""
    edit = GraphEditor(copy_model(model))
    moved, node = [], edit.producer(output)
    while node is not None and node.op_type in _MOVES and len(edit.consumers(node.input[0])) == 1:
        moved.append(node)
        node = edit.producer(node.input[0])
    found = _squasher(node, edit.producer) if node is not None else None
    if found is None:
        return model, output, None
    kind, logits, doomed = found
    for dead in doomed:
        edit.remove(dead)
    if moved:  # the data movement now reads the scores; the output keeps its name
        edit.set_input(moved[-1], 0, logits)
        return edit.commit(), output, kind
    return _rename_output(edit.commit(), output, logits), logits, kind


def _squasher(node, made_by):
    """``made_by(tensor)``: the node writing ``tensor`` or None."""
    """(kind, scores tensor, nodes to remove) when ``node`` ends a squasher, else None."""
    if node.op_type in _SQUASHERS:
        return node.op_type, node.input[0], [node]
    if node.op_type == "Div":
        return _written_softmax(node, made_by)
    return None


def _written_softmax(div, made_by):
    """Div(e, ReduceSum(e)) with e = Exp(s): a softmax of s, or of x when s = x - max(x)."""
    exp = made_by(div.input[0])
    if exp is None or exp.op_type != "Exp":
        return None
    total = _through(made_by(div.input[1]), made_by)
    if total is None or total.op_type != "ReduceSum" or total.input[0] != exp.output[0]:
        return None
    scores, doomed = exp.input[0], [div, exp]
    shifted = made_by(scores)
    if shifted is not None and shifted.op_type == "Sub":
        peak = _through(made_by(shifted.input[1]), made_by)
        if peak is not None and peak.op_type == "ReduceMax" and peak.input[0] == shifted.input[0]:
            scores = shifted.input[0]  # x - max(x) has the softmax of x; explain x
    return "softmax written out as Exp / ReduceSum / Div", scores, doomed


def _through(node, made_by):
    """The first node above ``node`` that is not broadcasting or reshaping."""
    while node is not None and node.op_type in _PLUMBING:
        computed = [made_by(t) for t in node.input if made_by(t) is not None]  # Max(-inf, m): follow m
        node = computed[0] if computed else None
    return node


def _rename_output(model: onnx.ModelProto, output: str, logits: str) -> onnx.ModelProto:
    already = logits in {o.name for o in model.graph.output}
    outs = []
    for out in model.graph.output:
        if out.name == output:
            if already:
                continue  # the logits are an output already; one entry per name
            out.name = logits  # the squashers keep the shape, so the declared type still holds
            if out.type.tensor_type.elem_type == 0:
                out.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
        outs.append(out)
    del model.graph.output[:]
    model.graph.output.extend(outs)
    return model
