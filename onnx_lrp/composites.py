"""Composites: which rule each node gets. Names and maps follow Zennit.

A composite maps a node to a rule by, in order of precedence: the user's ``name_map`` (node
name), the user's ``type_map`` (ONNX op type), the preset's first-layer rule, the preset's rule
for the node's category (convolution, dense), and the base map shared by all presets.
"""
from __future__ import annotations

import numpy as np

from .errors import CompositeError
from .ops import base as cat
from .rules import AlphaBeta, Epsilon, Flat, Gamma, Gradient, Norm, Pass, Rule, ZBox, ZPlus


def base_map() -> dict[str, Rule]:
    """Rules for op categories that every preset shares.

    Gates (a signal times a sigmoid-like gate, e.g. squeeze-excitation) get Pass: the gate is a
    constant and all relevance goes to the signal (signal-take-all); ``category_map={"gate":
    onnx_lrp.rules.Uniform()}`` or a ``type_map``/``name_map`` entry splits it equally instead.
    Normalisations (LayerNorm, decomposed or not) get Pass with their statistics held constant,
    as AttnLRP's identity rule.
    """
    return {
        cat.ACTIVATION: Pass(), cat.BATCHNORM: Pass(), cat.PASS: Pass(), cat.AFFINE: Pass(),
        cat.NORMALIZE: Pass(), cat.GATE: Pass(),
        cat.SUM: Norm(), cat.AVGPOOL: Norm(),
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
    """

    name = "custom"

    def __init__(self, layer_map=None, first_layer=None, type_map=None, name_map=None, category_map=None):
        self.layer_map = {**base_map(), **(layer_map or {}), **(category_map or {})}
        self.first_layer = first_layer
        self.type_map = dict(type_map or {})
        self.name_map = dict(name_map or {})
        for key, rule in {**self.layer_map, **self.type_map, **self.name_map}.items():
            if not isinstance(rule, Rule):
                raise CompositeError(f"the rule for {key!r} is {rule!r}, not an onnx_lrp.rules.Rule instance")

    def rule_for(self, node, category: str, is_first: bool) -> Rule:
        if node.name in self.name_map:
            return self.name_map[node.name]
        if node.op_type in self.type_map:
            return self.type_map[node.op_type]
        if is_first and self.first_layer is not None:
            return self.first_layer
        return self.layer_map[category]

    def with_overrides(self, type_map=None, name_map=None, category_map=None) -> "Composite":
        """A copy with extra overrides (they win over the existing ones)."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.type_map = {**self.type_map, **(type_map or {})}
        new.name_map = {**self.name_map, **(name_map or {})}
        new.layer_map = {**self.layer_map, **(category_map or {})}
        return new

    def __repr__(self):
        return f"{type(self).__name__}()"


class EpsilonComposite(Composite):
    name = "epsilon"

    def __init__(self, epsilon: float = 1e-6, **overrides):
        super().__init__({cat.CONV: Epsilon(epsilon), cat.DENSE: Epsilon(epsilon)}, **overrides)


class EpsilonPlus(Composite):
    name = "epsilon_plus"

    def __init__(self, epsilon: float = 1e-6, **overrides):
        super().__init__({cat.CONV: ZPlus(), cat.DENSE: Epsilon(epsilon)}, **overrides)


class EpsilonPlusFlat(Composite):
    name = "epsilon_plus_flat"

    def __init__(self, epsilon: float = 1e-6, **overrides):
        super().__init__({cat.CONV: ZPlus(), cat.DENSE: Epsilon(epsilon)}, first_layer=Flat(), **overrides)


class EpsilonAlpha2Beta1(Composite):
    name = "epsilon_alpha2_beta1"

    def __init__(self, epsilon: float = 1e-6, **overrides):
        super().__init__({cat.CONV: AlphaBeta(2.0, 1.0), cat.DENSE: Epsilon(epsilon)}, **overrides)


class EpsilonAlpha2Beta1Flat(Composite):
    name = "epsilon_alpha2_beta1_flat"

    def __init__(self, epsilon: float = 1e-6, **overrides):
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
        super().__init__({cat.CONV: Gamma(gamma), cat.DENSE: Epsilon(epsilon)}, first_layer=ZBox(low, high),
                         **overrides)


PRESETS = {cls.name: cls for cls in (EpsilonComposite, EpsilonPlus, EpsilonPlusFlat, EpsilonAlpha2Beta1,
                                     EpsilonAlpha2Beta1Flat, EpsilonGammaBox)}
DEFAULT = "epsilon_plus_flat"


def names() -> list[str]:
    return list(PRESETS)


def get(composite="epsilon_plus_flat", **kwargs) -> Composite:
    """A composite from a preset name (with keyword arguments, e.g. ``low``/``high``) or as given."""
    if isinstance(composite, Composite):
        return composite.with_overrides(**kwargs) if kwargs else composite
    if not isinstance(composite, str) or composite not in PRESETS:
        raise CompositeError(f"unknown composite {composite!r}; choose one of {names()!r} or pass an "
                             "onnx_lrp.composites.Composite")
    try:
        return PRESETS[composite](**kwargs)
    except TypeError as exc:
        raise CompositeError(f"composite {composite!r}: {exc}; e.g. epsilon_gamma_box needs low= and high=, "
                             "the lowest and highest input values") from exc
