"""What an evaluation measures and how: metric groups, :class:`Settings`, method specs and gates."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field

from . import metrics as M
from ..attribution import METHODS
from ..errors import InvalidInput
from ..names import did_you_mean

#: metric group (what ``--metrics`` names) -> the report columns it produces
METRIC_GROUPS = {
    "region_perturbation": ("aopc_morf", "aopc_lerf", "morf_lerf_area"),
    "faithfulness_correlation": ("faithfulness_correlation",),
    "relevance_mass_accuracy": ("relevance_mass_accuracy",),
    "pointing_game": ("pointing_game",),
    "model_randomisation": ("randomisation_spearman",),
}
#: columns where a lower value is better (gate them with ``--fail-over``)
LOWER_IS_BETTER = {"aopc_lerf", "randomisation_spearman"}
#: columns whose value depends on random draws: reported with ± their standard deviation over seeds
RANDOM_DEPENDENT = {"faithfulness_correlation", "randomisation_spearman"}
LOCALISATION = ("relevance_mass_accuracy", "pointing_game")
DEFAULT_METHODS = ("lrp", "gradient", "occlusion", "random")
DEFAULT_METRICS = ("region_perturbation", "faithfulness_correlation", "relevance_mass_accuracy", "pointing_game")


@dataclass
class Settings:
    """Metric parameters shared by all methods.

    patch : patch size on the relevance map; None = ``max(1, min(H, W) // 14)`` (16 at 224×224,
        2 at 32×32; for flat inputs ``max(1, F // 64)``)
    steps, fraction : region perturbation: curve points after the start, share of patches removed
    baseline : what removed features become: a number or ``"mean"`` (per-channel mean of the sample);
        occlusion uses the same unless told otherwise
    faithfulness_runs, faithfulness_subset : random subsets and their size (share of patches); the
        spread over seeds is estimated by bootstrapping the subsets
    randomisation_layers, randomisation_samples : cascade checkpoints; samples checked (first ones)
    randomisation : ``"absolute"`` (Spearman of |R|, reported and gated) or ``"signed"``; both are
        in the report's ``randomisation`` section
    randomisation_seeds : re-initialisations (seeds ``seed``, ``seed + 1``, ...) averaged, with
        their standard deviation
    pointing_tolerance : pointing game tolerance in map positions
    batch_size : samples per evaluation batch; ort_batch : rows per onnxruntime call
    seed : every random choice (random method, tie breaks, subsets, re-initialisation)
    examples : samples (the first ones) kept with every method's relevance map for the HTML report
    """

    patch: int | None = None
    steps: int = 16
    fraction: float = 1.0
    baseline: float | str = "mean"
    faithfulness_runs: int = M.FAITHFULNESS_RUNS
    faithfulness_subset: float = 0.1
    randomisation_layers: int = 4
    randomisation_samples: int = 4
    randomisation: str = "absolute"
    randomisation_seeds: int = 3
    pointing_tolerance: float = 0.0
    batch_size: int = 8
    ort_batch: int = 32
    seed: int = 0
    examples: int = 8

    def __post_init__(self):
        if self.randomisation not in M.SIMILARITIES:
            raise InvalidInput(f"randomisation {self.randomisation!r} is not known; choose from {M.SIMILARITIES!r}")
        if self.randomisation_seeds < 1:
            raise InvalidInput(f"randomisation_seeds must be ≥ 1, got {self.randomisation_seeds!r}")

    def patch_for(self, spatial: tuple) -> int:
        if self.patch is not None:
            return int(self.patch)
        if len(spatial) == 1:
            return max(1, spatial[0] // 64)
        return max(1, min(spatial) // 14)


#: the arguments every attribution method takes before its options
_METHOD_ARGUMENTS = ("a", "x", "target", "batch_size")


@dataclass
class MethodSpec:
    """A method with options, written ``name`` or ``name:key=value,key=value`` on the command line."""

    name: str
    options: dict = field(default_factory=dict)
    label: str = ""

    def __post_init__(self):
        if self.name not in METHODS:
            raise InvalidInput(f"unknown method {self.name!r}{did_you_mean(self.name, METHODS)}; choose from "
                               f"{list(METHODS)!r}")
        params = inspect.signature(METHODS[self.name].fn).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):  # lrp takes any
            known = [name for name in params if name not in _METHOD_ARGUMENTS]
            unknown = [key for key in self.options if key not in known]
            if unknown:
                raise InvalidInput(f"method {self.name!r} has no option {unknown[0]!r}"
                                   f"{did_you_mean(unknown[0], known)}; its options: {known!r}")
        self.label = self.label or self.name

    @classmethod
    def parse(cls, text: str) -> "MethodSpec":
        name, _, rest = text.partition(":")
        options = {}
        for item in filter(None, rest.split(",")):
            key, eq, value = item.partition("=")
            if not eq or not key:
                raise InvalidInput(f"method option {item!r} in {text!r} is not key=value; e.g. occlusion:window=16")
            options[key.strip()] = parse_literal(value.strip())
        return cls(name.strip(), options, text if options else name.strip())

    def resolved(self, settings: Settings, patch: int) -> dict:
        """Options with the evaluation's defaults filled in (occlusion follows the patch size and
        the perturbation baseline; random and SmoothGrad the seed)."""
        defaults = {
            "occlusion": {"window": patch, "stride": max(1, patch // 2), "baseline": settings.baseline},
            "random": {"seed": settings.seed},
            "smoothgrad": {"seed": settings.seed},
            "integrated_gradients": {"steps": 16},
        }.get(self.name, {})
        return {**defaults, **self.options}


def parse_literal(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


@dataclass
class Gate:
    """``METRIC=VALUE`` or ``METHOD:METRIC=VALUE``; ``under``: fail when the value is below the
    threshold (``--fail-under``), ``over``: fail when above (``--fail-over``). Without a method it
    applies to every evaluated method. A missing or NaN value fails."""

    metric: str
    threshold: float
    method: str | None = None
    kind: str = "under"

    @classmethod
    def parse(cls, text: str, kind: str = "under") -> "Gate":
        left, eq, value = text.partition("=")
        method, _, metric = left.rpartition(":")
        try:
            threshold = float(value)
        except ValueError:
            threshold = None
        if not eq or not metric or threshold is None:
            raise InvalidInput(f"gate {text!r} is not METRIC=VALUE or METHOD:METRIC=VALUE, e.g. "
                               "relevance_mass_accuracy=0.5 or lrp:aopc_morf=1.0")
        columns = [c for cols in METRIC_GROUPS.values() for c in cols]
        if metric not in columns:
            raise InvalidInput(f"gate {text!r}: unknown metric {metric!r}{did_you_mean(metric, columns)}; choose "
                               f"from {columns!r}")
        return cls(metric, threshold, method or None, kind)

    def __str__(self):
        flag = "fail-under" if self.kind == "under" else "fail-over"
        return f"{flag} {self.method + ':' if self.method else ''}{self.metric}={self.threshold:g}"
