"""An ``Einsum`` of the data and a constant weight — a dense layer written as Einsum, e.g.
``btf,fh->bth``, ``bsd,dnh->bsnh``, ``bsnh,nhd->bsd`` (Keras ``EinsumDense`` through tf2onnx, some
torch exports of attention projections) — becomes ``MatMul`` with the weight reshaped to a matrix:

    Transpose(x) → Reshape(x, [0, …, 0, ∏contracted]) → MatMul(·, W[∏contracted, ∏new])
                 → Reshape(·, [0, …, 0, new…]) → Transpose(·, output order)

each Transpose and Reshape only where it is not the identity. The data's indices that the
output keeps (the batch first among them) are the MatMul's rows, the indices shared with the weight
are contracted, the weight's other indices are the new features. The dense handler then gives the
MatMul the dense rules (Epsilon, ZPlus, Gamma, ...) and its ``attention_projection`` category;
Transposes and Reshapes route relevance unchanged. An index of the weight that neither the data
nor the output has is summed into the weight at load time.

Other forms (a diagonal, an index shared by data, weight and output — a per-head weight —, an index
summed inside the data, the batch index contracted, an ellipsis in the weight or an input of
unknown rank) are left as they are; the Einsum handler then refuses them naming the equation
(:func:`einsum_dense_plan` says why).
"""
from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from ._edit import attr, copy_model, drop_unused_initializers
from .editor import GraphEditor


@dataclass
class EinsumDensePlan:
    """How ``einsum(equation, x, W)`` becomes ``x' @ W'``: ``data_perm`` puts the data's kept
    indices first and its contracted ones last, ``weight`` is W' (∏contracted, ∏new), ``new_shape``
    the new features' sizes, ``out_perm`` the output order after the MatMul (None: identity)."""

    kept: int
    data_perm: list[int] | None
    contracted: int
    weight: np.ndarray
    new_shape: list[int]
    out_perm: list[int] | None


def einsum_dense_plan(equation: str, data_index: int, data_rank: int | None,
                      weight: np.ndarray) -> EinsumDensePlan | str:
    """The rewrite of a two-operand Einsum whose input ``1 - data_index`` is the constant
    ``weight``, or a short reason why it is not a dense layer."""
    if isinstance(equation, bytes):
        equation = equation.decode()
    terms = _terms(equation, data_rank, weight.ndim, data_index)
    if isinstance(terms, str):
        return terms
    (d, w), out = (terms[0][data_index], terms[0][1 - data_index]), terms[1]
    if any(len(set(t)) != len(t) for t in (d, w, out)):
        return "a repeated index in one term (a diagonal) is not a dense layer"
    if len(w) != weight.ndim:
        return f"the weight has rank {weight.ndim}, the equation gives it {len(w)} indices"
    if any(ch in d and ch in w and ch in out for ch in out):
        return "an index of the data, the weight and the output alike (a weight per position or head) is not a dense layer"
    if any(ch not in w and ch not in out for ch in d):
        return "an index summed inside the data is not a dense layer"
    if not d or d[0] not in out or d[0] in w:
        return "the data's first index (the batch) is not kept in the output: it would mix samples"
    kept = [ch for ch in d if ch in out]
    contracted = [ch for ch in d if ch in w]
    new = [ch for ch in w if ch in out]
    sums = tuple(i for i, ch in enumerate(w) if ch not in d and ch not in out)
    matrix = weight.sum(axis=sums, keepdims=True) if sums else weight
    w_kept = [ch for i, ch in enumerate(w) if i not in sums]
    matrix = matrix.reshape([weight.shape[i] for i in range(len(w)) if i not in sums])
    order = [w_kept.index(ch) for ch in contracted + new]
    sizes = {ch: matrix.shape[i] for i, ch in enumerate(w_kept)}
    k = int(np.prod([sizes[ch] for ch in contracted], dtype=np.int64))
    m = int(np.prod([sizes[ch] for ch in new], dtype=np.int64))
    matrix = np.ascontiguousarray(matrix.transpose(order)).reshape(k, m)
    data_perm = [d.index(ch) for ch in kept + contracted]
    natural = kept + new
    out_perm = [natural.index(ch) for ch in out]
    return EinsumDensePlan(len(kept), None if data_perm == sorted(data_perm) else data_perm, len(contracted),
                           matrix, [sizes[ch] for ch in new], None if out_perm == sorted(out_perm) else out_perm)


def _terms(equation: str, data_rank, weight_rank, data_index):
    """([term0, term1], out) with any ellipsis written out as letters, or a reason."""
    equation = equation.replace(" ", "")
    ins, arrow, out = equation.partition("->")
    terms = ins.split(",")
    if len(terms) != 2:
        return "an Einsum of two operands is expected"
    if not arrow:  # implicit output: the indices seen once, in alphabetical order
        letters = "".join(t.replace("...", "") for t in terms)
        out = ("..." if any("..." in t for t in terms) else "") + \
            "".join(sorted(ch for ch in set(letters) if letters.count(ch) == 1))
    if "..." in terms[1 - data_index]:
        return "an ellipsis in the weight's term is not a dense layer"
    if "..." in terms[data_index] or "..." in out:
        if data_rank is None:
            return "the data's rank is unknown, so its ellipsis cannot be written out"
        free = [ch for ch in string.ascii_letters if ch not in equation][:data_rank]
        span = "".join(free[:data_rank - len(terms[data_index].replace("...", ""))])
        terms[data_index] = terms[data_index].replace("...", span)
        out = out.replace("...", span)
    if not all(ch in string.ascii_letters for t in terms + [out] for ch in t):
        return "the equation has characters other than index letters"
    return terms, out


def rewrite_einsum_dense(model: onnx.ModelProto, ranks: dict[str, int]) -> onnx.ModelProto:
    """Rewrite each Einsum of data and one constant that :func:`einsum_dense_plan` accepts;
    ``ranks``: tensor name -> rank (shape inference)."""
    model = copy_model(model)
    edit = GraphEditor(model)
    found = [(node, plan) for node in edit.nodes() if (plan := _plan(edit, node, ranks)) is not None]
    if not found:
        return model
    for node, plan in found:
        bias = _bias_after(edit, node, plan)
        edit.remove(node)
        if bias is not None:
            edit.remove(bias[0])
        edit.insert_before(node, _nodes(edit, node, plan, bias))
    model = edit.commit()
    drop_unused_initializers(model)  # the weights in their Einsum layout
    return model


def _plan(edit: GraphEditor, node, ranks) -> EinsumDensePlan | None:
    if node.op_type != "Einsum" or len(node.input) != 2:
        return None
    consts = [edit.const(t) for t in node.input]
    if (consts[0] is None) == (consts[1] is None):
        return None  # two activations (attention) or two constants (folded already)
    data_index = 0 if consts[0] is None else 1
    weight = consts[1 - data_index]
    if not np.issubdtype(weight.dtype, np.floating):
        return None
    plan = einsum_dense_plan(attr(node, "equation", ""), data_index, ranks.get(node.input[data_index]), weight)
    return None if isinstance(plan, str) else plan


def _bias_after(edit: GraphEditor, node, plan: EinsumDensePlan):
    """``(add, b)`` when the Einsum's only reader adds a constant over its new features alone
    (``bsd,dnh->bsnh`` then ``+ b[n, h]``, as Keras ``EinsumDense`` writes its bias): the Add then
    moves before the Reshape to the features, where :func:`fuse_dense_bias` makes it the MatMul's
    bias (b flattened to ∏new); else None."""
    readers = edit.consumers(node.output[0])
    if plan.out_perm is not None or len(plan.new_shape) < 2 or len(readers) != 1 or edit.is_output(node.output[0]):
        return None
    add = readers[0]
    if add.op_type != "Add" or len(add.input) != 2:
        return None
    b = edit.const(add.input[1] if add.input[0] == node.output[0] else add.input[0])
    new = len(plan.new_shape)
    if b is None or b.ndim > plan.kept + new or any(d != 1 for d in b.shape[:max(b.ndim - new, 0)]):
        return None  # a bias per position (or computed) is not a dense layer's
    try:
        vector = np.broadcast_to(b.reshape(b.shape[max(b.ndim - new, 0):]), plan.new_shape).reshape(-1)
    except ValueError:
        return None
    return add, vector.astype(plan.weight.dtype)


def _nodes(edit: GraphEditor, node, plan: EinsumDensePlan, bias=None) -> list[onnx.NodeProto]:
    base = node.name or node.output[0]

    def fresh(suffix):
        return edit.fresh(f"{base}/{suffix}")

    def const(suffix, value):
        name = fresh(suffix)
        edit.set_const(name, np.asarray(value))
        return name

    nodes, x = [], node.input[0] if edit.const(node.input[0]) is None else node.input[1]
    if plan.data_perm is not None:
        nodes.append(helper.make_node("Transpose", [x], [x := fresh("data_order")], name=fresh("DataOrder"),
                                      perm=plan.data_perm))
    if plan.contracted != 1:
        shape = const("rows_shape", np.asarray([0] * plan.kept + [plan.weight.shape[0]], np.int64))
        nodes.append(helper.make_node("Reshape", [x, shape], [x := fresh("rows")], name=fresh("Rows")))
    weight = const("weight", plan.weight)
    last = plan.out_perm is None and len(plan.new_shape) == 1
    y = node.output[0] if last else fresh("dense")
    nodes.append(helper.make_node("MatMul", [x, weight], [y], name=node.name or fresh("MatMul")))
    out = node.output[0]
    if bias is not None:
        add, vector = bias
        nodes.append(helper.make_node("Add", [y, const("bias", vector)], [y := fresh("biased")],
                                      name=add.name or fresh("Bias")))
        out = add.output[0]
    if len(plan.new_shape) != 1:
        shape = const("out_shape", np.asarray([0] * plan.kept + plan.new_shape, np.int64))
        done = plan.out_perm is None
        nodes.append(helper.make_node("Reshape", [y, shape], [y := out if done else fresh("features")],
                                      name=fresh("Features")))
    if plan.out_perm is not None:
        nodes.append(helper.make_node("Transpose", [y], [node.output[0]], name=fresh("OutputOrder"),
                                      perm=plan.out_perm))
    return nodes
