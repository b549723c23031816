"""Attention: products of two activations that contract an axis (``MatMul``, ``Einsum``) and
``Softmax`` inside the graph.

In scaled dot-product attention ``softmax(Q Kᵀ / √d + mask) V`` both matrix products multiply two
activations: the scores ``Q Kᵀ`` and the context ``A V`` (A the attention probabilities). These
handlers give the exact forward pass and VJP; the rules decide who gets relevance
(:mod:`onnx_lrp.rules`):

* AttnLRP (Achtibat et al. 2024, "AttnLRP: attention-aware layer-wise relevance propagation for
  transformers"): the uniform rule on both products (each operand gets half of the relevance of
  every product, which is ``x ⊙ VJP_x(R / O) / 2`` per operand), and the softmax rule
  ``R_in = x ⊙ (R − s ⊙ ΣR)`` with x the softmax input;
* CP-LRP (Ali et al. 2022, "XAI for transformers: better explanations through conservative
  propagation"): the attention probabilities are constants, so ``A V`` is linear in V, which gets
  all its relevance, and nothing flows into the softmax.

The *signal* of ``A V`` (what CP-LRP propagates into) is the operand that is not a softmax output.
"""
from __future__ import annotations

from ..errors import UnsupportedOp
from .base import AFFINE, BILINEAR, CONV, DENSE, NONNEGATIVE, ROUTE, SOFTMAX, Handler, attr, unbroadcast, unsupported
from .registry import handler_for, handles
from .structure import producer

#: Ops that pass attention probabilities on unchanged in value range (dropout, casts, head reshapes).
_PASS_THROUGH = {"Cast", "Dropout", "Identity", "Reshape", "Transpose", "Expand", "Unsqueeze", "Squeeze",
                 "Slice", "Gather", "Concat", "Where"}


def is_probabilities(g, tensor: str, depth: int = 8) -> bool:
    """True when ``tensor`` is a Softmax output (through casts and head reshapes)."""
    node = producer(g, tensor)
    while node is not None and depth > 0:
        if node.op_type == "Softmax":
            return True
        if node.op_type not in _PASS_THROUGH:
            return False
        relevant = [t for t in node.input if t in g.relevant]
        if len(relevant) != 1:
            return False
        node, depth = producer(g, relevant[0]), depth - 1
    return False


class _TwoActivations(Handler):
    """An op of two activations, bilinear in them; relevant inputs in node order."""

    category = BILINEAR

    def relevant_inputs(self, node, g):
        return [0, 1]

    def signal(self, node, g) -> int | None:
        """The operand that is not attention probabilities (CP-LRP's values), or None."""
        probs = [is_probabilities(g, t) for t in node.input[:2]]
        if probs[0] != probs[1]:
            return 1 if probs[0] else 0
        return None


def _two_activations(node, g) -> bool:
    return len(node.input) == 2 and all(t in g.relevant for t in node.input)


@handles("MatMul", when=_two_activations)
class BilinearMatMulHandler(_TwoActivations):
    """``MatMul(A, B)`` with both operands activations of rank >= 3 (batched, e.g. heads)."""

    def check(self, node, g):
        ranks = [len(g.shape(t)) for t in node.input[:2]]
        if min(ranks) < 3:
            raise unsupported(node, f"MatMul of two activations of ranks {ranks}: an operand of rank < 3 would "
                                    "contract or broadcast the batch axis; export the batch as the first axis of both")

    def forward(self, b, node, g, inputs, params):
        return b.op("MatMul", list(inputs), hint="matmul")

    def vjp(self, b, node, g, grads, params):
        a, c = node.input[:2]
        grad, out_shape = grads[0], tuple(g.shape(node.output[0]))
        da = b.op("MatMul", [grad, _swap_last(b, g, c)], hint="matmul_vjp")
        db = b.op("MatMul", [_swap_last(b, g, a), grad], hint="matmul_vjp")
        shapes = [tuple(g.shape(a)), tuple(g.shape(c))]
        da_shape = out_shape[:-1] + (shapes[0][-1],)
        db_shape = out_shape[:-2] + shapes[1][-2:]
        return [unbroadcast(b, da, da_shape, shapes[0]), unbroadcast(b, db, db_shape, shapes[1])]


def _swap_last(b, g, tensor):
    rank = len(g.shape(tensor))
    return b.op("Transpose", [tensor], perm=list(range(rank - 2)) + [rank - 1, rank - 2])


@handles("Einsum", when=_two_activations)
class BilinearEinsumHandler(_TwoActivations):
    """``Einsum`` of two activations, explicit output, each index once per term, batch index first.

    The VJP of ``O = einsum('a,b->o', A, B)`` is ``einsum('o,b->a', G, B)`` for A (and likewise for
    B), valid when every index of A appears in B or in O (no index summed inside one operand)."""

    def _terms(self, node):
        equation = attr(node, "equation", "").replace(" ", "")
        if "->" not in equation:
            return None
        ins, out = equation.split("->")
        terms = ins.split(",")
        return (terms, out) if len(terms) == 2 else None

    def check(self, node, g):
        parsed = self._terms(node)
        if parsed is None:
            raise unsupported(node, "Einsum is supported for two operands with an explicit output ('ab,bc->ac')")
        (a, c), out = parsed
        letters = [t.replace("...", "") for t in (a, c, out)]
        if any(len(set(t)) != len(t) for t in letters):
            raise unsupported(node, "Einsum with a repeated index in one term (a diagonal) is not supported")
        if any(ch not in letters[1] + letters[2] for ch in letters[0]) or \
                any(ch not in letters[0] + letters[2] for ch in letters[1]):
            raise unsupported(node, "Einsum that sums an index inside one operand is not supported")
        if not (a[0] == c[0] == out[0]) and not (a.startswith("...") and c.startswith("...")
                                                  and out.startswith("...")):
            raise unsupported(node, "Einsum whose first index is not the batch of both operands and the output "
                                    "would mix samples")

    def forward(self, b, node, g, inputs, params):
        return b.op("Einsum", list(inputs), hint="einsum", equation=attr(node, "equation"))

    def vjp(self, b, node, g, grads, params):
        (a, c), out = self._terms(node)
        x, y = node.input[:2]
        return [b.op("Einsum", [grads[0], y], hint="einsum_vjp", equation=f"{out},{c}->{a}"),
                b.op("Einsum", [x, grads[0]], hint="einsum_vjp", equation=f"{a},{out}->{c}")]


def _one_constant(node, g) -> bool:
    return len(node.input) == 2 and sum(g.const(t) is not None for t in node.input) == 1


@handles("Einsum", when=_one_constant)
class ConstantEinsumHandler(Handler):
    """``Einsum`` of the data and a constant that canonization did not rewrite into a dense layer
    (:mod:`onnx_lrp.canonize.einsum_dense`): refused, naming the equation and why."""

    category = DENSE

    def check(self, node, g):
        from ..canonize.einsum_dense import einsum_dense_plan  # canonize imports the handlers late

        equation = attr(node, "equation", "")
        data_index = 0 if g.const(node.input[0]) is None else 1
        weight = g.const(node.input[1 - data_index])
        try:
            rank = len(g.shape(node.input[data_index]))
        except KeyError:
            rank = None
        plan = einsum_dense_plan(equation, data_index, rank, weight)
        why = plan if isinstance(plan, str) else "the dense-layer rewrite did not apply"
        raise unsupported(node, f"Einsum {equation!r} with a constant operand: {why}; a dense layer is "
                                "written 'btf,fh->bth' (the data's indices kept or contracted with the weight's)")


@handles("Softmax")
class SoftmaxHandler(Handler):
    """``Softmax`` over one axis inside the graph (a trailing softmax is removed by canonization)."""

    category = SOFTMAX
    data_input = 0
    sign = NONNEGATIVE

    def axis(self, node, g) -> int:
        rank = len(g.shape(node.input[0]))
        opset = next((o.version for o in g.model.opset_import if o.domain in ("", "ai.onnx")), 13)
        axis = attr(node, "axis", -1 if opset >= 13 else 1) % rank
        if opset < 13 and axis != rank - 1:
            raise unsupported(node, "a Softmax before opset 13 over several axes (flattened from 'axis' on); "
                                    "re-export with opset >= 13")
        return axis

    def check(self, node, g):
        if g.is_batch_axis(node.input[0], self.axis(node, g)):
            raise unsupported(node, "Softmax over the batch axis mixes samples")

    def vjp(self, b, node, g, grads, params):
        s = node.output[0]
        sg = b.mul(s, grads[0])
        total = b.op("ReduceSum", [sg, b.ints([self.axis(node, g)])], keepdims=1)
        return [b.sub(sg, b.mul(s, total))]


#: How many nodes a walk from a dense layer to an attention product visits at most.
_WALK_LIMIT = 64


def is_attention_projection(node, g) -> bool:
    """Whether dense layer ``node`` projects into or out of attention: its output reaches an operand
    of a product of two activations (the q, k, v projections) or its input comes from one (the
    output projection after A·V), through data movement and constant scales and biases only.
    These are category ``"attention_projection"``, which takes the dense rule unless a composite
    names it: LXT's ViT recipe leaves them at LRP-0 while the other dense layers get Gamma, since
    ``nn.MultiheadAttention`` calls them functionally and LXT's module hooks never see them."""
    return g.memo("attention_projection", node, lambda: _reaches_product(g, node.name, g.dag.successors)
                  or _reaches_product(g, node.name, g.dag.predecessors))


def _reaches_product(g, start: str, step) -> bool:
    seen, todo = set(), list(step(start))
    while todo and len(seen) < _WALK_LIMIT:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        node = g.nodes[name]
        try:
            handler = handler_for(node, g)
            # a dense layer or convolution ends the walk (asking its category would walk back here)
            category = None if handler.category in (DENSE, CONV) else handler.category_of(node, g)
        except UnsupportedOp:
            continue
        if category == BILINEAR:
            return True
        if category in (ROUTE, AFFINE):
            todo.extend(step(name))
    return False
