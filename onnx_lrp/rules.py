"""LRP rules, op-agnostic: each is written against a node context that can emit the op's forward
pass with modified inputs/parameters and its VJP (see :mod:`onnx_lrp.ops.base`).

Semantics and defaults follow Zennit 0.5.1. ``stab(z) = z + ε·sign(z)`` with sign(0) = +1.
"""
from __future__ import annotations

import numpy as np

from .errors import CompositeError


def _value_identity(value):
    """A hashable stand-in for a rule parameter (numbers, or arrays such as ZBox's bounds)."""
    if isinstance(value, (np.ndarray, np.generic, list, tuple)):
        array = np.asarray(value, np.float64)
        return float(array) if array.ndim == 0 else ("array", array.shape, array.tobytes())
    return value


def param_repr(value) -> str:
    """A parameter on one line: numbers as they are, small arrays as flat lists (e.g. ZBox bounds per channel)."""
    if not isinstance(value, (np.ndarray, np.generic)):
        return repr(value)
    array = np.asarray(value)
    if array.ndim == 0:
        return repr(array.item())
    flat = [float(f"{v:.6g}") for v in array.reshape(-1).tolist()]
    return repr(flat) if array.size <= 8 else f"array(shape={array.shape})"


def _positive(name, p):
    return np.maximum(p, 0)


def _negative(name, p):
    return np.minimum(p, 0)


def _no_bias(modifier):
    def modify(name, p):
        return np.zeros_like(p) if name == "bias" else modifier(name, p)
    modify.key = ("nobias", _key(modifier))
    return modify


def _key(modifier):
    return getattr(modifier, "key", modifier)


def _gamma_mod(gamma, sign):
    clamp = np.maximum if sign > 0 else np.minimum

    def modify(name, p):
        return p + gamma * clamp(p, 0)
    modify.key = ("gamma", gamma, sign)
    return modify


_positive.key = "positive"
_negative.key = "negative"


class Rule:
    """Base class. ``__call__(ctx)`` returns the relevance at each relevant input of the node."""

    def __call__(self, ctx) -> list[str]:
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={param_repr(v)}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"

    def identity(self) -> tuple:
        """The rule's class and parameters, hashable: rules with equal identities emit the same graph."""
        params = sorted((k, _value_identity(v)) for k, v in vars(self).items() if not k.startswith("_"))
        return (type(self).__qualname__, tuple(params))

    def __eq__(self, other):
        return isinstance(other, Rule) and self.identity() == other.identity()

    def __hash__(self):
        return hash(self.identity())

    def _single_input(self, ctx) -> str:
        if len(ctx.inputs) != 1:
            raise CompositeError(f"rule {type(self).__name__} needs a node with one relevant input; node "
                                 f"{ctx.node.name!r} ({ctx.node.op_type}) has {len(ctx.inputs)}; use Norm")
        return ctx.inputs[0]


class Epsilon(Rule):
    """LRP-ε (Bach et al. 2015, "On pixel-wise explanations..."): ``x ⊙ VJP_W(R / stab(z))``.

    ``epsilon=0`` is LRP-0; outputs with z = 0 then pass no relevance (instead of NaN).

    On a node with several relevant inputs whose handler names one the *signal* (a gate times a
    signal, attention probabilities times values) the other inputs are held constant, so the node
    is linear in the signal, which gets all the relevance: CP-LRP (Ali et al. 2022, "XAI for
    transformers: better explanations through conservative propagation").
    """

    def __init__(self, epsilon: float = 1e-6):
        self.epsilon = epsilon

    def __call__(self, ctx):
        s = ctx.b.ratio(ctx.R, ctx.forward(), self.epsilon)
        if len(ctx.inputs) == 1:
            return [ctx.b.mul(ctx.inputs[0], ctx.vjp(s)[0])]
        signal = _signal_position(ctx, self)
        grads = ctx.vjp(s)
        return [ctx.b.mul(x, grads[i]) if i == signal else None for i, x in enumerate(ctx.inputs)]


class Norm(Rule):
    """Parameter-free ε rule used for sums and average pools: ``x_i ⊙ VJP_i(R / stab(f(x)))``."""

    def __init__(self, stabilizer: float = 1e-6):
        self.stabilizer = stabilizer

    def __call__(self, ctx):
        s = ctx.b.ratio(ctx.R, ctx.forward(), self.stabilizer)
        return [ctx.b.mul(x, g) for x, g in zip(ctx.inputs, ctx.vjp(s))]


class ZPlus(Rule):
    """LRP-z⁺ (Montavon et al. 2017, "Explaining nonlinear classification decisions with deep
    Taylor decomposition"), Zennit's form: positive weights for x⁺, negative weights for x⁻."""

    def __init__(self, stabilizer: float = 1e-6):
        self.stabilizer = stabilizer

    def __call__(self, ctx):
        x = self._single_input(ctx)
        pairs = _sign_pairs(ctx, x, _positive, _no_bias(_negative))
        # x⁺W⁺ + b⁺ + x⁻W⁻ >= 0: the stabiliser +ε goes into the bias of the first pass (no Add)
        z = ctx.b.sum([ctx.forward_shifted(pairs[0][0], _positive, self.stabilizer)] +
                      [ctx.forward([xi], mod) for xi, mod in pairs[1:]])
        s = _shifted_ratio(ctx, z, self.stabilizer)
        return [ctx.b.sum([ctx.b.mul(xi, ctx.vjp(s, mod)[0]) for xi, mod in pairs])]


class AlphaBeta(Rule):
    """LRP-αβ (Bach et al. 2015): ``α·R⁺ − β·R⁻`` with α − β = 1 (default α=2, β=1)."""

    def __init__(self, alpha: float = 2.0, beta: float = 1.0, stabilizer: float = 1e-6):
        if not np.isclose(alpha - beta, 1.0):
            raise CompositeError(f"AlphaBeta needs alpha - beta = 1 to conserve relevance; got alpha={alpha!r}, "
                                 f"beta={beta!r}")
        self.alpha, self.beta, self.stabilizer = alpha, beta, stabilizer

    def __call__(self, ctx):
        x = self._single_input(ctx)
        pos = _signed_part(ctx, _sign_pairs(ctx, x, _positive, _no_bias(_negative)), self.stabilizer, +1)
        neg = _signed_part(ctx, _sign_pairs(ctx, x, _negative, _no_bias(_positive)), self.stabilizer, -1)
        b = ctx.b
        return [b.sub(b.mul(pos, b.const(self.alpha)), b.mul(neg, b.const(self.beta)))]


class Gamma(Rule):
    """Generalised LRP-γ (Montavon et al. 2019, "Layer-wise relevance propagation: an overview";
    Zennit 0.5.1): where z > 0, contributions x⁺(W+γW⁺) and x⁻(W+γW⁻) share R; where z < 0,
    x⁺(W+γW⁻) and x⁻(W+γW⁺) do. Bias terms follow the weights of the x⁺ pass."""

    def __init__(self, gamma: float = 0.25, stabilizer: float = 1e-6):
        self.gamma, self.stabilizer = gamma, stabilizer

    def __call__(self, ctx):
        x = self._single_input(ctx)
        if ctx.nonnegative(x):
            return [self._nonnegative_input(ctx, x)]
        b = ctx.b
        up, down = _gamma_mod(self.gamma, +1), _gamma_mod(self.gamma, -1)
        z = ctx.forward()
        pos_mask = b.op("Cast", [b.op("Greater", [z, b.const(0.0)])], to=1)
        neg_mask = b.op("Cast", [b.op("Less", [z, b.const(0.0)])], to=1)
        terms = []
        for mask, pairs in ((pos_mask, _sign_pairs(ctx, x, up, _no_bias(down))),
                            (neg_mask, _sign_pairs(ctx, x, down, _no_bias(up)))):
            s = b.ratio(b.mul(mask, ctx.R), b.sum([ctx.forward([xi], mod) for xi, mod in pairs]), self.stabilizer)
            terms += [b.mul(xi, ctx.vjp(s, mod)[0]) for xi, mod in pairs]
        return [b.sum(terms)]

    def _nonnegative_input(self, ctx, x):
        """The same rule for x >= 0 with one modified forward and two VJPs instead of two and two:
        with z = f(x; W, b) and q = γ·f(x; W⁺, b⁺) + ε (ε in q's bias; q computed by the model's own
        Conv where the handler can, :meth:`NodeContext.forward_pair`), the denominators are z + q
        (where z > 0) and (1+γ)z − q (where z < 0), and by linearity of the VJP in W,
        R = x ⊙ [VJP_W(s⁺ + (1+γ)s⁻) + VJP_{γW⁺}(s⁺ − s⁻)]."""
        b, gamma = ctx.b, self.gamma
        scaled = _scaled_positive(gamma)
        z, q = ctx.forward_pair(scaled, self.stabilizer)
        zero = b.const(0.0)
        pos_den = b.add(z, q)  # > 0 wherever z > 0
        neg_den = b.sub(b.mul(z, b.const(1.0 + gamma)), q)  # < 0 wherever z < 0
        s_pos = b.op("Where", [b.op("Greater", [z, zero]), b.div(ctx.R, pos_den), zero])
        s_neg = b.op("Where", [b.op("Less", [z, zero]), b.div(ctx.R, neg_den), zero])
        plain = ctx.vjp(b.add(s_pos, b.mul(s_neg, b.const(1.0 + gamma))))[0]
        positive = ctx.vjp(b.sub(s_pos, s_neg), scaled)[0]
        return b.mul(x, b.add(plain, positive))


class _OnesInput(Rule):
    """Rules that set the input to one and modify the weights: ``VJP_W'(R / stab(f(1; W')))``.
    Both denominators are >= 0 by construction."""

    def __init__(self, stabilizer: float = 1e-6):
        self.stabilizer = stabilizer

    def __call__(self, ctx):
        x = self._single_input(ctx)
        modify = self._weights()
        z = ctx.forward([ctx.ones_like(x)], modify)
        s = ctx.b.ratio(ctx.R, z, self.stabilizer, sign=+1)
        return [ctx.vjp(s, modify)[0]]


class Flat(_OnesInput):
    """LRP-flat (Lapuschkin et al. 2019, "Unmasking Clever Hans predictors"): inputs and weights set
    to one, bias zero; relevance is spread uniformly over each receptive field."""

    @staticmethod
    def _weights():
        return _ones_mod()


class WSquare(_OnesInput):
    """LRP-w² (Montavon et al. 2017): inputs set to one, weights and bias squared."""

    @staticmethod
    def _weights():
        return _square_mod()


class ZBox(Rule):
    """LRP-z^B (Montavon et al. 2017) for inputs bounded by ``low`` and ``high`` (scalars or arrays
    broadcastable to one sample, e.g. per channel (1, C, 1, 1)). The bias cancels."""

    def __init__(self, low, high, stabilizer: float = 1e-6):
        self.low, self.high, self.stabilizer = low, high, stabilizer

    def __call__(self, ctx):
        x = self._single_input(ctx)
        b = ctx.b
        low, high = ctx.constant_like(x, self.low), ctx.constant_like(x, self.high)
        parts = [(x, _identity_mod), (low, _positive), (high, _negative)]
        outs = [ctx.forward([xi], mod) for xi, mod in parts]
        s = b.ratio(ctx.R, b.sub(b.sub(outs[0], outs[1]), outs[2]), self.stabilizer)
        contrib = [b.mul(xi, ctx.vjp(s, mod)[0]) for xi, mod in parts]
        return [b.sub(b.sub(contrib[0], contrib[1]), contrib[2])]


class Pass(Rule):
    """Relevance passes unchanged (activations, normalisations with the statistics held fixed).

    On a node with several relevant inputs whose handler names one of them the *signal* (a gate
    times a signal, x·sigmoid(x), a value divided by its own standard deviation), all relevance
    goes to the signal and the other inputs (gate, statistic) are treated as constants: they get
    none. This is the signal-take-all strategy of Arras et al. 2017 ("Explaining recurrent neural
    network predictions in sentiment analysis") for gates, the identity rule of AttnLRP (Achtibat
    et al. 2024, "AttnLRP: attention-aware layer-wise relevance propagation for transformers") for
    elementwise activations and LayerNorm, and Zennit's Pass for activations.

    A gate times a state that carries no relevance (a recurrent cell's constant or fed initial
    state, :mod:`onnx_lrp.ops.recurrent`) passes nothing: the gate gets none and the state's
    share is absorbed, as a bias's is.
    """

    def __call__(self, ctx):
        if ctx.handler.absorbs:
            return [None] * len(ctx.inputs)
        if len(ctx.inputs) == 1:
            return [ctx.R]
        signal = _signal_position(ctx, self)
        return [ctx.R if i == signal else None for i in range(len(ctx.inputs))]


class Uniform(Rule):
    """AttnLRP's uniform rule for a product of n activations (Achtibat et al. 2024, "AttnLRP:
    attention-aware layer-wise relevance propagation for transformers"): the relevance of each
    product of n factors is split equally over them. For a node multilinear in its relevant inputs
    (an elementwise product, a matrix product Q Kᵀ or A·V, an Einsum) that is
    ``R_i = x_i ⊙ VJP_i(R / stab(y)) / n``: the ε-rule over the sum of products, then 1/n of each
    product to every factor. On an elementwise product it is ``R / n``; on a gate it is the
    alternative to Pass (signal takes all). ``epsilon=0`` is LXT's efficient setting.
    """

    def __init__(self, epsilon: float = 0.0):
        self.epsilon = epsilon

    def __call__(self, ctx):
        n = len(ctx.inputs)
        if n == 1:
            return [ctx.R]
        if ctx.handler.stand_in:  # an op without a handler, named a rule by the user: split R itself
            return [ctx.b.mul(ctx.R, ctx.b.const(1.0 / n))] * n
        s = ctx.b.ratio(ctx.R, ctx.forward(), self.epsilon)
        share = ctx.b.const(1.0 / n)
        return [ctx.b.mul(ctx.b.mul(x, g), share) for x, g in zip(ctx.inputs, ctx.vjp(s))]


class Softmax(Rule):
    """AttnLRP's softmax rule (Achtibat et al. 2024, Proposition 3.1: deep Taylor decomposition at
    the input, the bias term absorbing the rest): ``R_in = x ⊙ (R − s ⊙ Σ R)`` with x the softmax
    input and s its output, the sum over the softmax axis. Written as ``x ⊙ VJP(R / s)``, which is
    the same for a softmax and needs nothing but the handler's VJP. Inputs that are ±inf (masked
    scores) count as 0, as in LXT; where s = 0 the ratio is 0.
    """

    def __call__(self, ctx):
        x = self._single_input(ctx)
        b = ctx.b
        s = b.ratio(ctx.R, ctx.forward(), 0.0)
        finite = b.op("Where", [b.op("IsInf", [x]), b.const(0.0), x])
        return [b.mul(finite, ctx.vjp(s)[0])]


class DetachStd(Rule):
    """LRP-ε through a normalisation linearised with its standard deviation held constant (Ali et
    al. 2022; AttnLRP / LXT's LayerNorm): ``y = γ (x − mean x) / σ + β`` with σ a constant is
    affine in x, so ``R_x = x ⊙ VJP_σ(R / stab(y))`` where VJP_σ is the VJP with σ detached. The
    centring step is LRP-ε (relevance moves between features as ``x − mean x`` mixes them) and β
    absorbs its share like a bias. The decomposed form gets the same: the centring ``Sub`` by its
    detached VJP, the division by σ and the Mul by γ as the identity (ε-rule on a gain), the Add of
    β by the ε-rule. Pass is the pure identity variant.
    """

    def __init__(self, epsilon: float = 0.0):
        self.epsilon = epsilon

    def __call__(self, ctx):
        if ctx.handler.detached_vjp is None:  # a division by σ: with σ constant the ε-rule is the identity
            return Pass()(ctx)
        s = ctx.b.ratio(ctx.R, ctx.forward(), self.epsilon)
        grads = ctx.handler.detached_vjp(ctx.b, ctx.node, ctx.g, s)
        return [None if grad is None else ctx.b.mul(x, grad) for x, grad in zip(ctx.inputs, grads)]


class Gradient(Rule):
    """Relevance is routed by the op's VJP: data movement (reshape, concat, slice, ...) and
    MaxPool (winner takes all)."""

    def __call__(self, ctx):
        return ctx.vjp(ctx.R_all)


def _signal_position(ctx, rule) -> int:
    """Position, among the node's relevant inputs, of the one its handler calls the signal."""
    position = ctx.handler.signal(ctx.node, ctx.g)
    if position is None:
        raise CompositeError(
            f"rule {type(rule).__name__} needs a node with one relevant input or a recognised signal; node "
            f"{ctx.node.name!r} ({ctx.node.op_type}) has {len(ctx.inputs)} relevant inputs {ctx.inputs!r} and none "
            f"is recognised as the signal. Choose a rule for it by name, e.g. "
            f"name_map={{{ctx.node.name!r}: onnx_lrp.rules.Uniform()}} (equal split) or "
            f"onnx_lrp.rules.Norm() (split in proportion to each input's contribution, for sums)")
    return position


def _scaled_positive(gamma):
    def modify(name, p):
        return gamma * np.maximum(p, 0)
    modify.key = ("scaled_positive", gamma)
    return modify


def _shifted_ratio(ctx, z, stabilizer):
    """R / z for a denominator whose stabiliser is already in it (a shifted bias), or LRP-0's
    ratio (0 where z = 0) when there is none."""
    return ctx.b.div(ctx.R, z) if stabilizer else ctx.b.ratio(ctx.R, z, 0.0)


def _identity_mod(name, p):
    return p


_identity_mod.key = "identity"


def _ones_mod():
    def modify(name, p):
        return np.zeros_like(p) if name == "bias" else np.ones_like(p)
    modify.key = "flat"
    return modify


def _square_mod():
    def modify(name, p):
        return p ** 2
    modify.key = "square"
    return modify


def _sign_pairs(ctx, x, mod_for_pos, mod_for_neg):
    """[(x⁺, mod), (x⁻, mod)], dropping x⁻ when x is known non-negative (it would contribute 0)."""
    pairs = [(ctx.positive(x), mod_for_pos)]
    if not ctx.nonnegative(x):
        pairs.append((ctx.negative(x), mod_for_neg))
    return pairs


def _signed_part(ctx, pairs, stabilizer, sign):
    """One signed half of AlphaBeta; its denominator has the sign ``sign`` by construction."""
    z = ctx.b.sum([ctx.forward([xi], mod) for xi, mod in pairs])
    s = ctx.b.ratio(ctx.R, z, stabilizer, sign=sign)
    return ctx.b.sum([ctx.b.mul(xi, ctx.vjp(s, mod)[0]) for xi, mod in pairs])


def _public_rules(base=Rule) -> dict[str, type]:
    """Every public Rule subclass defined in this module (subclasses of private bases included)."""
    found = {}
    for cls in base.__subclasses__():
        if cls.__module__ == __name__ and not cls.__name__.startswith("_"):
            found[cls.__name__] = cls
        found.update(_public_rules(cls))
    return found


#: rule name -> class: every public rule of this module, found, not listed
RULES = _public_rules()
