"""The :class:`Report` of an evaluation and its renderings: table, JSON, JUnit XML, PNG curves."""
from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import InvalidInput, OutputError
from ..files import write_text
from .settings import METRIC_GROUPS, RANDOM_DEPENDENT, Gate

@dataclass
class GateResult:
    gate: str
    method: str
    metric: str
    value: float | None
    passed: bool


@dataclass
class Report:
    """What :func:`evaluate` measured: per method, the mean of each metric over the samples.

    Attributes
    ----------
    values : method -> metric -> {"mean", "std", "n"}: mean and standard deviation over the
        samples; the random-dependent columns (:data:`RANDOM_DEPENDENT`) add ``seed_std``, the
        standard deviation of the value over seeds, and ``seed_std_from``, how it was found
    curves : method -> {"fraction", "morf", "lerf"} mean perturbation curves
    randomisation : method -> {"layers", "similarity", "spearman" (the gated similarity per
        cascade step), "absolute" and "signed": {"per_layer", "mean", "seed_std", "per_seed"}, ...}
    gates : results of :meth:`check`
    examples : the first samples with every method's relevance map (``Settings.examples``); not
        in the JSON
    preprocess : how pictures became the model's input (for showing the examples), or None

    In a notebook a Report shows its table with the gates (:meth:`_repr_html_`);
    :meth:`write_html` writes the whole report as one HTML file.
    """

    model: str
    samples: int = 0
    samples_with_mask: int = 0
    methods: dict = field(default_factory=dict)
    metrics: list = field(default_factory=list)
    values: dict = field(default_factory=dict)
    curves: dict = field(default_factory=dict)
    randomisation: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    gates: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    seconds: float = 0.0
    examples: list = field(default_factory=list, repr=False)
    preprocess: object = field(default=None, repr=False)

    def value(self, method: str, metric: str) -> float:
        entry = self.values.get(method, {}).get(metric)
        return float("nan") if entry is None else entry["mean"]

    def seed_std(self, method: str, metric: str) -> float:
        """Standard deviation over seeds of a random-dependent value (NaN for the others)."""
        entry = self.values.get(method, {}).get(metric) or {}
        value = entry.get("seed_std")
        return float("nan") if value is None else float(value)

    @property
    def columns(self) -> list[str]:
        return [c for g in self.metrics for c in METRIC_GROUPS[g]]

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    def check(self, gates: Iterable[Gate]) -> list[GateResult]:
        """Evaluate ``gates``; results are kept in :attr:`gates` and returned."""
        results = []
        for gate in gates:
            if gate.method is not None and gate.method not in self.methods:
                raise InvalidInput(f"{gate}: method {gate.method!r} was not evaluated; methods: "
                                   f"{list(self.methods)!r}")
            if gate.metric not in self.columns:
                raise InvalidInput(f"{gate}: metric {gate.metric!r} was not computed; add its group to --metrics "
                                   f"(computed: {self.columns!r})")
            for method in [gate.method] if gate.method else list(self.methods):
                value = self.value(method, gate.metric)
                ok = math.isfinite(value) and (value >= gate.threshold if gate.kind == "under"
                                               else value <= gate.threshold)
                results.append(GateResult(str(gate), method, gate.metric, value if math.isfinite(value) else None,
                                          ok))
        self.gates.extend(results)
        return results

    # --- renderings -------------------------------------------------------------------------
    def table(self) -> str:
        """One row per method; random-dependent values as ``mean ± std over seeds``."""
        cols = self.columns
        cells = {m: [self._cell(m, c) for c in cols] for m in self.methods}
        widths = [max([len(c), 9] + [len(cells[m][k]) for m in self.methods]) + 2 for k, c in enumerate(cols)]
        width = max([len("method")] + [len(m) for m in self.methods]) + 2
        head = "method".ljust(width) + "".join(c.rjust(w) for c, w in zip(cols, widths))
        lines = [head, "-" * len(head)]
        for method in self.methods:
            lines.append(method.ljust(width) + "".join(v.rjust(w) for v, w in zip(cells[method], widths)))
        lines.append(f"{self.samples} samples ({self.samples_with_mask} with a mask); {self.model}; "
                     f"{self.seconds:.1f} s")
        lines += self._spread_legend(cols)
        for g in self.gates:
            value = "missing" if g.value is None else f"{g.value:.4f}"
            lines.append(f"{'PASS' if g.passed else 'FAIL'} {g.gate} [{g.method}]: {value}")
        return "\n".join(lines)

    def _cell(self, method: str, column: str) -> str:
        v = self.value(method, column)
        if not math.isfinite(v):
            return "-"
        s = self.seed_std(method, column)
        return f"{v:.4f} ± {s:.4f}" if column in RANDOM_DEPENDENT and math.isfinite(s) else f"{v:.4f}"

    def _spread_legend(self, cols) -> list[str]:
        """What ± means, and the randomisation similarity not gated."""
        lines = []
        for column in (c for c in cols if c in RANDOM_DEPENDENT):
            how = next((e.get("seed_std_from") for e in (self.values.get(m, {}).get(column) for m in self.methods)
                        if e and e.get("seed_std_from")), None)
            if how:
                lines.append(f"{column}: ± std over seeds ({how})")
        for method, entry in self.randomisation.items():
            other = next(k for k in ("absolute", "signed") if k != entry["similarity"])
            o = entry[other]
            value = f"{o['mean']:.4f}" if math.isfinite(o["mean"]) else "-"
            spread = f" ± {o['seed_std']:.4f}" if math.isfinite(o["seed_std"]) else ""
            lines.append(f"randomisation_spearman [{method}]: Spearman of {_SIMILARITY[entry['similarity']]}; of "
                         f"{_SIMILARITY[other]}: {value}{spread}")
        return lines

    def to_dict(self) -> dict:
        doc = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in _NOT_IN_JSON}
        doc["gates"] = [asdict(g) for g in self.gates]
        doc["passed"] = self.passed
        doc["summary"] = {m: {c: _finite(self.value(m, c)) for c in self.columns} for m in self.methods}
        return _jsonable(doc)

    def write_json(self, path) -> Path:
        return write_text(path, json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")

    def junit(self) -> str:
        """JUnit XML: one test suite per method, one test case per metric; a case fails when a
        gate on it failed. Values are in each case's ``system-out`` and the suite's properties."""
        suites = ET.Element("testsuites", name="onnx-lrp evaluate", time=f"{self.seconds:.3f}")
        for method in self.methods:
            gates = [g for g in self.gates if g.method == method]
            suite = ET.SubElement(suites, "testsuite", name=f"evaluate.{method}", tests=str(len(self.columns)),
                                  failures=str(sum(not g.passed for g in gates)), errors="0", skipped="0")
            props = ET.SubElement(suite, "properties")
            ET.SubElement(props, "property", name="model", value=self.model)
            ET.SubElement(props, "property", name="samples", value=str(self.samples))
            for column in self.columns:
                value = self.value(method, column)
                ET.SubElement(props, "property", name=column, value=_fmt(value))
                case = ET.SubElement(suite, "testcase", classname=f"onnx_lrp.evaluate.{method}", name=column)
                for g in gates:
                    if g.metric == column and not g.passed:
                        ET.SubElement(case, "failure", message=f"{g.gate}: {method} {column} = {_fmt(value)}",
                                      type="GateFailed").text = (f"{method} {column} = {_fmt(value)} does not pass "
                                                                 f"{g.gate}")
                spread = self.seed_std(method, column)
                ET.SubElement(case, "system-out").text = f"{column} = {_fmt(value)}" + (
                    f" ± {_fmt(spread)} (std over seeds)" if math.isfinite(spread) else "")
        ET.indent(suites)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"

    def write_junit(self, path) -> Path:
        return write_text(path, self.junit())

    def _repr_html_(self) -> str:
        from ..html import report_table_html

        return report_table_html(self)

    def write_html(self, path) -> Path:
        """The whole report as one self-contained HTML file (:func:`onnx_lrp.html.evaluation_html`)."""
        from ..html import write_evaluation_html

        return write_evaluation_html(self, path)

    def write_plots(self, directory) -> list[Path]:
        """``region_perturbation.png``: every method's mean MoRF and LeRF curves."""
        from .plotting import plot_perturbation_curves

        directory = Path(directory)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the plot directory {str(directory)!r}: {exc}") from exc
        if not self.curves:
            return []
        curves = {m: (np.asarray(c["fraction"]), np.asarray(c["morf"]), np.asarray(c["lerf"]))
                  for m, c in self.curves.items()}
        title = f"region perturbation: {Path(self.model).name}, {self.samples} samples"
        return [plot_perturbation_curves(curves, directory / "region_perturbation.png", title)]


_NOT_IN_JSON = ("gates", "examples", "preprocess")
_SIMILARITY = {"absolute": "|R|", "signed": "signed R"}


def _fmt(value: float) -> str:
    return f"{value:.6g}" if math.isfinite(value) else "nan"


def _finite(value):
    return value if value is not None and math.isfinite(value) else None


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj

