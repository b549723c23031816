"""Composites: which rule each node gets. Names and maps follow Zennit.

A composite maps a node to a rule by, in order of precedence: the user's ``name_map`` (node
name), the user's ``type_map`` (ONNX op type), the preset's first-layer rule, the preset's rule
for the node's category (convolution, dense), and the base map shared by all presets.
"""
from __future__ import annotations

import difflib
import warnings

import numpy as np
import onnx

from .errors import CompositeError
from .names import did_you_mean
from .ops import base as cat
from .rules import (AlphaBeta, DetachStd, Epsilon, Flat, Gamma, Gradient, Norm, Pass, Rule, Softmax, Uniform, ZBox,
                    ZPlus, param_repr)


def base_map() -> dict[str, Rule]:
    """Rules for op categories that every preset shares.

    Gates (a signal times a sigmoid-like gate, e.g. squeeze-excitation) get Pass: the gate is a
    constant and all relevance goes to the signal (signal-take-all); ``category_map={"gate":
    onnx_lrp.rules.Uniform()}`` or a ``type_map``/``name_map`` entry splits it equally instead.
    Normalisations (LayerNorm, decomposed or not) get Pass with their statistics held constant,
    as AttnLRP's identity rule. Attention gets AttnLRP's rules: the uniform rule on products of two
    activations (Q Kᵀ, A·V) and the softmax rule on a Softmax inside the graph. A recurrent cell
    update ``c = f⊙c' + i⊙g`` (category ``"cell"``) gets Norm: the ε-rule split of Arras et al.
    2017 between the two gated terms.
    """
    return {
        cat.ACTIVATION: Pass(), cat.BATCHNORM: Pass(), cat.PASS: Pass(), cat.AFFINE: Pass(),
        cat.NORMALIZE: Pass(), cat.GATE: Pass(), cat.BILINEAR: Uniform(), cat.SOFTMAX: Softmax(),
        cat.SUM: Norm(), cat.AVGPOOL: Norm(), cat.CELL: Norm(),
        cat.ROUTE: Gradient(), cat.MAXPOOL: Gradient(),
        cat.DENSE: Epsilon(), cat.CONV: Epsilon(),
    }


class Composite:
    """Rule assignment for a whole model.

    Parameters
    ----------
    layer_map : dict, optional
        Category (``"convolution"``, ``"dense"``, ...) to rule, on top of :func:`base_map`.
    first_layer : Rule, optional
        Rule for the first linear op reached from the input.
    type_map : dict, optional
        ONNX op type to rule; wins over the preset.
    name_map : dict, optional
        Node name to rule; wins over everything.
    category_map : dict, optional
        Category to rule on top of ``layer_map``: how a user changes a preset's rule for a whole
        category, e.g. ``category_map={"gate": onnx_lrp.rules.Uniform()}``.
    unmatched : {"error", "warn"}
        What a ``name_map`` entry naming no node of the model does when the composite is checked
        against it (:meth:`check_model`): raise :class:`CompositeError` (default) or warn.
    cell_epsilon : float, optional
        The ε of the ε-rule that splits a recurrent cell update ``c = f⊙c' + i⊙g`` between its
        two terms (Arras et al. 2017): ``Norm(cell_epsilon)`` for the ``"cell"`` category
        (default 1e-6; 0 conserves exactly). ``category_map={"cell": ...}`` wins over it.

    Two composites are equal (and hash alike) when they give every node the same rule: same
    class, same parameters, same maps. ``repr`` shows the parameters.
    """

    name = "custom"

    def __init__(self, layer_map=None, first_layer=None, type_map=None, name_map=None, category_map=None,
                 unmatched: str = "error", cell_epsilon=None):
        _check_categories(layer_map, "layer_map")
        _check_categories(category_map, "category_map")
        if unmatched not in ("error", "warn"):
            raise CompositeError(f"unmatched={unmatched!r}; use 'error' or 'warn'")
        cell = {} if cell_epsilon is None else {cat.CELL: _cell_rule(cell_epsilon)}
        self.layer_map = {**base_map(), **(layer_map or {}), **cell, **(category_map or {})}
        self.first_layer = first_layer
        self.type_map = dict(type_map or {})
        self.name_map = dict(name_map or {})
        self.unmatched = unmatched
        self.params = getattr(self, "params", {})  # a preset's own arguments (epsilon, gamma, ...), for repr
        for key, rule in {**self.layer_map, **self.type_map, **self.name_map}.items():
            if not isinstance(rule, Rule):
                raise CompositeError(f"the rule for {key!r} is {rule!r}, not an onnx_lrp.rules.Rule instance")
        if first_layer is not None and not isinstance(first_layer, Rule):
            raise CompositeError(f"first_layer is {first_layer!r}, not an onnx_lrp.rules.Rule instance")

    def rule_for(self, node, category: str, is_first: bool) -> Rule:
        if node.name in self.name_map:
            return self.name_map[node.name]
        if node.op_type in self.type_map:
            return self.type_map[node.op_type]
        if is_first and self.first_layer is not None:
            return self.first_layer
        if category not in self.layer_map:
            category = cat.FALLBACK.get(category, category)
        if category not in self.layer_map:
            raise CompositeError(f"node {node.name!r} ({node.op_type}) has category {category!r}, which "
                                 f"{self!r} gives no rule; add category_map={{{category!r}: ...}}")
        return self.layer_map[category]

    def with_overrides(self, type_map=None, name_map=None, category_map=None, cell_epsilon=None) -> "Composite":
        """A copy with extra overrides (they win over the existing ones)."""
        _check_categories(category_map, "category_map")
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.type_map = {**self.type_map, **(type_map or {})}
        new.name_map = {**self.name_map, **(name_map or {})}
        cell = {} if cell_epsilon is None else {cat.CELL: _cell_rule(cell_epsilon)}
        new.layer_map = {**self.layer_map, **cell, **(category_map or {})}
        for key, rule in {**new.type_map, **new.name_map, **new.layer_map}.items():
            if not isinstance(rule, Rule):
                raise CompositeError(f"the rule for {key!r} is {rule!r}, not an onnx_lrp.rules.Rule instance")
        return new

    def check_model(self, model: onnx.ModelProto, label: str = "the model", known_op_types=()) -> None:
        """Check the maps against a (canonized) model: every ``name_map`` key names one of its nodes
        (else :class:`CompositeError`, or a warning with ``unmatched="warn"``) and every ``type_map``
        key is an op type (of the model, of a handler, or of the ONNX standard)."""
        nodes = [n.name for n in model.graph.node]
        # an LSTM/GRU/RNN node is unrolled per input shape into nodes named "<node>/<direction>/t<step>/..."
        unrolled = tuple(f"{n.name}/" for n in model.graph.node if n.op_type in ("LSTM", "GRU", "RNN"))
        missing = [name for name in self.name_map if name not in set(nodes) and not name.startswith(unrolled)]
        if missing:
            message = (_no_match("node", missing, nodes, f" in {str(label)!r} (after canonization)")
                       + "; `onnx-lrp inspect MODEL` lists the node names")
            if self.unmatched == "warn":
                warnings.warn(message, stacklevel=2)
            else:
                raise CompositeError(message)
        types = {n.op_type for n in model.graph.node} | set(known_op_types)
        unknown = [t for t in self.type_map if t not in types and not _is_onnx_op(t)]
        if unknown:
            raise CompositeError(_no_match("op type", unknown, sorted(types), " (not an ONNX op type)"))

    def identity(self) -> tuple:
        """Hashable: the class and every rule this composite can hand out."""
        return (type(self).__qualname__, _map_identity(self.layer_map),
                None if self.first_layer is None else self.first_layer.identity(),
                _map_identity(self.type_map), _map_identity(self.name_map))

    def __eq__(self, other):
        return isinstance(other, Composite) and self.identity() == other.identity()

    def __hash__(self):
        return hash(self.identity())

    def __repr__(self):
        args = [f"{k}={param_repr(v)}" for k, v in self.params.items()]
        if type(self) is Composite:
            changed = {k: r for k, r in self.layer_map.items() if base_map().get(k) != r}
            args += [f"layer_map={changed!r}"] if changed else []
            args += [f"first_layer={self.first_layer!r}"] if self.first_layer is not None else []
        elif self.layer_map != self._preset_layer_map():
            changed = {k: r for k, r in self.layer_map.items() if self._preset_layer_map().get(k) != r}
            args.append(f"category_map={changed!r}")
        args += [f"{k}={getattr(self, k)!r}" for k in ("type_map", "name_map") if getattr(self, k)]
        return f"{type(self).__name__}({', '.join(args)})"

    def _preset_layer_map(self) -> dict:
        return type(self)(**self.params).layer_map if type(self) in PRESETS.values() else self.layer_map


def _cell_rule(epsilon) -> Rule:
    if not isinstance(epsilon, (int, float)) or isinstance(epsilon, bool) or not epsilon >= 0:
        raise CompositeError(f"cell_epsilon must be a number >= 0, got {epsilon!r}")
    return Norm(float(epsilon))


class EpsilonComposite(Composite):
    name = "epsilon"

    def __init__(self, epsilon: float = 1e-6, **overrides):
        self.params = {"epsilon": epsilon}
        super().__init__({cat.CONV: Epsilon(epsilon), cat.DENSE: Epsilon(epsilon)}, **overrides)


class EpsilonPlus(Composite):
    name = "epsilon_plus"

    def __init__(self, epsilon: float = 1e-6, **overrides):
        self.params = {"epsilon": epsilon}
        super().__init__({cat.CONV: ZPlus(), cat.DENSE: Epsilon(epsilon)}, **overrides)


class EpsilonPlusFlat(Composite):
    name = "epsilon_plus_flat"

    def __init__(self, epsilon: float = 1e-6, **overrides):
        self.params = {"epsilon": epsilon}
        super().__init__({cat.CONV: ZPlus(), cat.DENSE: Epsilon(epsilon)}, first_layer=Flat(), **overrides)


class EpsilonAlpha2Beta1(Composite):
    name = "epsilon_alpha2_beta1"

    def __init__(self, epsilon: float = 1e-6, **overrides):
        self.params = {"epsilon": epsilon}
        super().__init__({cat.CONV: AlphaBeta(2.0, 1.0), cat.DENSE: Epsilon(epsilon)}, **overrides)


class EpsilonAlpha2Beta1Flat(Composite):
    name = "epsilon_alpha2_beta1_flat"

    def __init__(self, epsilon: float = 1e-6, **overrides):
        self.params = {"epsilon": epsilon}
        super().__init__({cat.CONV: AlphaBeta(2.0, 1.0), cat.DENSE: Epsilon(epsilon)}, first_layer=Flat(),
                         **overrides)


class EpsilonGammaBox(Composite):
    """ZBox(low, high) on the first layer, Gamma(0.25) on convolutions, Epsilon on dense layers.

    ``low``/``high`` are the lowest and highest input values: scalars or arrays broadcastable to one
    sample (e.g. (1, 3, 1, 1) per channel for normalised images).
    """

    name = "epsilon_gamma_box"

    def __init__(self, low, high, epsilon: float = 1e-6, gamma: float = 0.25, **overrides):
        self.low, self.high = np.asarray(low, np.float32), np.asarray(high, np.float32)
        self.params = {"low": self.low, "high": self.high, "epsilon": epsilon, "gamma": gamma}
        super().__init__({cat.CONV: Gamma(gamma), cat.DENSE: Epsilon(epsilon)}, first_layer=ZBox(low, high),
                         **overrides)


class AttnLRP(Composite):
    """AttnLRP (Achtibat et al. 2024, "AttnLRP: attention-aware layer-wise relevance propagation for
    transformers"), as LXT 2.1 implements it (``lxt.efficient``).

    ===============================  ==============================================================
    node                             rule
    ===============================  ==============================================================
    dense layers, convolutions       Epsilon(ε); Gamma(γ) with ``linear_gamma`` / ``conv_gamma``
    elementwise affine (scale, bias,  Epsilon(ε): a constant added (position embeddings, LayerNorm
    attention mask, γ and β)         β, masks) absorbs its share, as a bias does
    residual sums                    Norm(ε)
    Q Kᵀ, A·V (MatMul, Einsum)       Uniform(ε): half of each product's relevance to each operand
    Softmax                          Softmax: ``x ⊙ (R − s ⊙ ΣR)``
    gates (``act(gate) · up``)       Uniform(ε)
    GELU, SiLU, tanh, ...            Pass (identity rule)
    LayerNorm, RMSNorm               DetachStd(ε) (σ constant, centring by LRP-ε, β absorbing;
                                     LXT's choice) or, with ``layer_norm="identity"``, Pass
    ===============================  ==============================================================

    Parameters
    ----------
    epsilon : float
        ε of every ε-rule; 0 (LRP-0) is LXT's efficient setting, the default. Where a denominator is
        exactly 0, LRP-0 passes no relevance.
    layer_norm : {"detach", "identity"}
    conv_gamma, linear_gamma : float, optional
        Gamma on convolutions / dense layers instead of Epsilon (LXT's ViT recipe).
    **overrides
        ``type_map``, ``name_map``, ``category_map`` as for every composite.
    """

    name = "attnlrp"

    def __init__(self, epsilon: float = 0.0, layer_norm: str = "detach", conv_gamma: float | None = None,
                 linear_gamma: float | None = None, **overrides):
        self.params = {"epsilon": epsilon, "layer_norm": layer_norm, "conv_gamma": conv_gamma,
                       "linear_gamma": linear_gamma}
        super().__init__(_transformer_map(epsilon, layer_norm, conv_gamma, linear_gamma, gate=Uniform(epsilon),
                                          bilinear=Uniform(epsilon)), **overrides)


class CPLRP(Composite):
    """CP-LRP (Ali et al. 2022, "XAI for transformers: better explanations through conservative
    propagation"), as LXT 2.1's ``cp_LRP`` maps: attention probabilities and gates are constants,
    so ``A·V`` and ``act(gate) · up`` are linear in the values / the ungated branch, which get all
    the relevance by Epsilon(ε); nothing flows into the softmax or the gate. Everything else as
    :class:`AttnLRP` (same parameters)."""

    name = "cp_lrp"

    def __init__(self, epsilon: float = 0.0, layer_norm: str = "detach", conv_gamma: float | None = None,
                 linear_gamma: float | None = None, **overrides):
        self.params = {"epsilon": epsilon, "layer_norm": layer_norm, "conv_gamma": conv_gamma,
                       "linear_gamma": linear_gamma}
        super().__init__(_transformer_map(epsilon, layer_norm, conv_gamma, linear_gamma, gate=Epsilon(epsilon),
                                          bilinear=Epsilon(epsilon)), **overrides)


def _transformer_map(epsilon, layer_norm, conv_gamma, linear_gamma, gate, bilinear) -> dict:
    norms = {"detach": DetachStd(epsilon), "identity": Pass()}
    if layer_norm not in norms:
        raise CompositeError(f"layer_norm={layer_norm!r}: choose 'detach' (σ constant, centring by LRP-ε, "
                             "LXT's choice) or 'identity' (relevance passes unchanged)")
    return {
        cat.DENSE: Epsilon(epsilon) if linear_gamma is None else Gamma(linear_gamma),
        cat.CONV: Epsilon(epsilon) if conv_gamma is None else Gamma(conv_gamma),
        cat.AFFINE: Epsilon(epsilon), cat.SUM: Norm(epsilon), cat.AVGPOOL: Norm(epsilon),
        cat.NORMALIZE: norms[layer_norm], cat.GATE: gate, cat.BILINEAR: bilinear, cat.SOFTMAX: Softmax(),
    }


def _check_categories(mapping, where: str) -> None:
    unknown = [k for k in (mapping or {}) if k not in cat.CATEGORIES]
    if unknown:
        raise CompositeError(_no_match("category", unknown, cat.CATEGORIES, f" in {where}"))


def _no_match(kind: str, wrong: list, known, where: str = "") -> str:
    """``unknown node 'conv_1' (did you mean 'conv1'?); ...`` for every wrong key."""
    parts = []
    for key in wrong:
        names = [str(k) for k in known]
        close = [k for k in names if k.casefold() == str(key).casefold()]
        close += [k for k in difflib.get_close_matches(str(key), names, n=3, cutoff=0.6) if k not in close]
        hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
        parts.append(f"{key!r}{hint}")
    listing = "" if len(known) > 12 else f"; known: {', '.join(map(str, known))}"
    return f"unknown {kind}{'s' if len(wrong) > 1 else ''} {', '.join(parts)}{where}{listing}"


def _is_onnx_op(op_type: str) -> bool:
    try:
        return onnx.defs.has(op_type)
    except Exception:  # an op type of another domain
        return False


def _map_identity(mapping: dict) -> tuple:
    return tuple(sorted((k, rule.identity()) for k, rule in mapping.items()))


PRESETS = {cls.name: cls for cls in (EpsilonComposite, EpsilonPlus, EpsilonPlusFlat, EpsilonAlpha2Beta1,
                                     EpsilonAlpha2Beta1Flat, EpsilonGammaBox, AttnLRP, CPLRP)}
DEFAULT = "epsilon_plus_flat"


def names() -> list[str]:
    return list(PRESETS)


def get(composite="epsilon_plus_flat", **kwargs) -> Composite:
    """A composite from a preset name (with keyword arguments, e.g. ``low``/``high``) or as given."""
    if isinstance(composite, Composite):
        return composite.with_overrides(**kwargs) if kwargs else composite
    if not isinstance(composite, str) or composite not in PRESETS:
        hint = did_you_mean(composite, names()) if isinstance(composite, str) else ""
        raise CompositeError(f"unknown composite {composite!r}{hint}; choose one of {names()!r} or pass an "
                             "onnx_lrp.composites.Composite")
    try:
        return PRESETS[composite](**kwargs)
    except TypeError as exc:
        raise CompositeError(f"composite {composite!r}: {exc}; e.g. epsilon_gamma_box needs low= and high=, "
                             "the lowest and highest input values") from exc
