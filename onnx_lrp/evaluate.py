"""Evaluate explanations in a validation pipeline: methods × metrics over a dataset, a report
(table, JSON, JUnit XML, PNG curves) and a gate that fails the run when a metric is too low.

Python::

    from onnx_lrp.evaluate import evaluate, Gate
    report = evaluate("models/efficientnet_lite0.onnx", ["models/samples/"], masks="masks/",
                      methods=["lrp", "gradient", "occlusion", "random"])
    print(report.table())
    failed = report.check([Gate.parse("lrp:relevance_mass_accuracy=0.5")])

Command line (``python -m onnx_lrp.evaluate`` or ``onnx-lrp evaluate``)::

    onnx-lrp evaluate MODEL INPUTS... [--masks DIR] [--methods ...] [--metrics ...]
                      [--json PATH] [--junit PATH] [--plots DIR] [--fail-under METRIC=VALUE ...]

Inputs stream through one batch at a time (bounded memory: one batch of samples and relevance,
plus running sums of the metrics); a progress bar is drawn on a terminal.
"""
from __future__ import annotations

import json
import math
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from . import metrics as M
from .attribution import METHODS, attribute, attributor
from .errors import InvalidInput, OnnxLrpError, OutputError
from .explainer import Explainer

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
LOCALISATION = ("relevance_mass_accuracy", "pointing_game")
DEFAULT_METHODS = ("lrp", "gradient", "occlusion", "random")
DEFAULT_METRICS = ("region_perturbation", "faithfulness_correlation", "relevance_mass_accuracy", "pointing_game")
MASK_SUFFIXES = (".png", ".npy", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


# --- settings and method specs --------------------------------------------------------------

@dataclass
class Settings:
    """Metric parameters shared by all methods.

    patch : patch size on the relevance map; None = ``max(1, min(H, W) // 14)`` (16 at 224×224,
        2 at 32×32; for flat inputs ``max(1, F // 64)``)
    steps, fraction : region perturbation: curve points after the start, share of patches removed
    baseline : what removed features become: a number or ``"mean"`` (per-channel mean of the sample);
        occlusion uses the same unless told otherwise
    faithfulness_runs, faithfulness_subset : random subsets and their size (share of patches)
    randomisation_layers, randomisation_samples : cascade checkpoints; samples checked (first ones)
    pointing_tolerance : pointing game tolerance in map positions
    batch_size : samples per evaluation batch; ort_batch : rows per onnxruntime call
    seed : every random choice (random method, tie breaks, subsets, re-initialisation)
    """

    patch: int | None = None
    steps: int = 16
    fraction: float = 1.0
    baseline: float | str = "mean"
    faithfulness_runs: int = 32
    faithfulness_subset: float = 0.1
    randomisation_layers: int = 4
    randomisation_samples: int = 4
    pointing_tolerance: float = 0.0
    batch_size: int = 8
    ort_batch: int = 32
    seed: int = 0

    def patch_for(self, spatial: tuple) -> int:
        if self.patch is not None:
            return int(self.patch)
        if len(spatial) == 1:
            return max(1, spatial[0] // 64)
        return max(1, min(spatial) // 14)


@dataclass
class MethodSpec:
    """A method with options, written ``name`` or ``name:key=value,key=value`` on the command line."""

    name: str
    options: dict = field(default_factory=dict)
    label: str = ""

    def __post_init__(self):
        if self.name not in METHODS:
            raise InvalidInput(f"unknown method {self.name!r}; choose from {list(METHODS)!r}")
        self.label = self.label or self.name

    @classmethod
    def parse(cls, text: str) -> "MethodSpec":
        name, _, rest = text.partition(":")
        options = {}
        for item in filter(None, rest.split(",")):
            key, eq, value = item.partition("=")
            if not eq or not key:
                raise InvalidInput(f"method option {item!r} in {text!r} is not key=value; e.g. occlusion:window=16")
            options[key.strip()] = _literal(value.strip())
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


def _literal(text: str):
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
            raise InvalidInput(f"gate {text!r}: unknown metric {metric!r}; choose from {columns!r}")
        return cls(metric, threshold, method or None, kind)

    def __str__(self):
        flag = "fail-under" if self.kind == "under" else "fail-over"
        return f"{flag} {self.method + ':' if self.method else ''}{self.metric}={self.threshold:g}"


# --- report ---------------------------------------------------------------------------------

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
    values : method -> metric -> {"mean", "std", "n"}
    curves : method -> {"fraction", "morf", "lerf"} mean perturbation curves
    randomisation : method -> {"layers", "spearman"} per cascade step
    gates : results of :meth:`check`
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

    def value(self, method: str, metric: str) -> float:
        entry = self.values.get(method, {}).get(metric)
        return float("nan") if entry is None else entry["mean"]

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
        cols = self.columns
        width = max([len("method")] + [len(m) for m in self.methods]) + 2
        head = "method".ljust(width) + "".join(c.rjust(max(len(c), 9) + 2) for c in cols)
        lines = [head, "-" * len(head)]
        for method in self.methods:
            row = method.ljust(width)
            for c in cols:
                v = self.value(method, c)
                row += (f"{v:.4f}" if math.isfinite(v) else "-").rjust(max(len(c), 9) + 2)
            lines.append(row)
        lines.append(f"{self.samples} samples ({self.samples_with_mask} with a mask); {self.model}; "
                     f"{self.seconds:.1f} s")
        for g in self.gates:
            value = "missing" if g.value is None else f"{g.value:.4f}"
            lines.append(f"{'PASS' if g.passed else 'FAIL'} {g.gate} [{g.method}]: {value}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        doc = {k: v for k, v in asdict(self).items() if k != "gates"}
        doc["gates"] = [asdict(g) for g in self.gates]
        doc["passed"] = self.passed
        doc["summary"] = {m: {c: _finite(self.value(m, c)) for c in self.columns} for m in self.methods}
        return _jsonable(doc)

    def write_json(self, path) -> Path:
        return _write_text(path, json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")

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
                ET.SubElement(case, "system-out").text = f"{column} = {_fmt(value)}"
        ET.indent(suites)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"

    def write_junit(self, path) -> Path:
        return _write_text(path, self.junit())

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


def _write_text(path, text: str) -> Path:
    import os
    import tempfile

    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError(f"cannot write {str(path)!r}: directory {str(path.parent)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {str(path)!r}: {exc}") from exc
    return path


# --- accumulation ---------------------------------------------------------------------------

class _Running:
    """Mean and standard deviation of a stream of values, NaNs skipped."""

    def __init__(self):
        self.n, self.total, self.sq = 0, 0.0, 0.0

    def add(self, values) -> None:
        v = np.asarray(values, np.float64).reshape(-1)
        v = v[np.isfinite(v)]
        self.n += len(v)
        self.total += float(v.sum())
        self.sq += float((v * v).sum())

    def result(self) -> dict:
        if not self.n:
            return {"mean": float("nan"), "std": float("nan"), "n": 0}
        mean = self.total / self.n
        return {"mean": mean, "std": math.sqrt(max(self.sq / self.n - mean * mean, 0.0)), "n": self.n}


class _Curves:
    def __init__(self):
        self.n, self.fraction, self.morf, self.lerf = 0, 0.0, 0.0, 0.0

    def add(self, c: M.PerturbationCurves) -> None:
        k = len(c.morf)
        self.n += k
        self.fraction = self.fraction + c.fraction * k
        self.morf = self.morf + c.morf.sum(axis=0)
        self.lerf = self.lerf + c.lerf.sum(axis=0)

    def result(self) -> dict | None:
        if not self.n:
            return None
        return {"fraction": self.fraction / self.n, "morf": self.morf / self.n, "lerf": self.lerf / self.n}


# --- inputs and masks -----------------------------------------------------------------------

@dataclass
class Item:
    """One sample: a name (file stem, ``stem_i`` inside a batch file), x (1, ...), its mask or None."""

    name: str
    x: np.ndarray
    source: str = ""
    mask: np.ndarray | None = None


def iter_items(explainer: Explainer, inputs) -> tuple[Iterator[Item], int | None]:
    """Samples of ``inputs`` (paths of files/directories, or an array (N, ...)), lazily, and
    their count when it can be known without reading the data."""
    if isinstance(inputs, np.ndarray):
        arr = np.asarray(inputs)
        return (Item(f"sample_{i}", arr[i:i + 1]) for i in range(len(arr))), len(arr)
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    from . import inputs as io
    from .metadata import from_proto

    model_input = io.ModelInput.from_dims(explainer.input_name, explainer.input_shape)
    pre = io.resolve(from_proto(explainer.source_model, explainer.label).preprocess, model_input)
    files = [f for path in inputs for f in io.list_inputs(path)[0]]

    def generate():
        for f in files:
            for sample in io.load(f, model_input, pre):
                yield Item(sample.name, sample.x, sample.where)

    return generate(), _count(files, model_input)


def _input_files(inputs) -> list[Path]:
    if isinstance(inputs, np.ndarray):
        return []
    paths = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    out = []
    for p in map(Path, paths):
        out += [f for f in p.iterdir() if f.is_file()] if p.is_dir() else [p]
    return out


def _count(files, model_input) -> int | None:
    total = 0
    for f in files:
        suffix = f.suffix.lower()
        try:
            if suffix == ".npy":
                shape = np.load(f, mmap_mode="r").shape
                total += shape[0] if len(shape) == model_input.rank else 1
            elif suffix == ".npz":
                return None
            else:
                total += 1
        except (OSError, ValueError):
            return None
    return total


class MaskFinder:
    """Masks for samples by name, from a directory. For a sample ``cat_efficientnet_lite0`` the
    first of ``cat_efficientnet_lite0_mask``, ``cat_efficientnet_mask``, ``cat_mask`` (shorter
    prefixes at underscores, so one ``cat_mask.png`` serves every model's preprocessed copy of
    the cat), then a file named exactly ``cat_efficientnet_lite0`` (a masks directory mirroring
    the inputs), each with a suffix of :data:`MASK_SUFFIXES`. Files in ``exclude`` (the inputs
    themselves, when masks sit beside them) are never masks. Images are binarised at half
    intensity (times alpha, if any) and resized (nearest) to the relevance map; ``.npy`` masks
    must already have the map's shape."""

    def __init__(self, directory, exclude=()):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise InvalidInput(f"mask directory {str(self.directory)!r} does not exist")
        skip = {Path(p).resolve() for p in exclude}
        self.files: dict[str, Path] = {}
        for p in sorted(self.directory.iterdir()):
            if p.is_file() and p.suffix.lower() in MASK_SUFFIXES and p.resolve() not in skip:
                self.files.setdefault(p.stem, p)
        self._cache: dict = {}

    def path_for(self, name: str) -> Path | None:
        parts = name.split("_")
        candidates = ["_".join(parts[:end]) + "_mask" for end in range(len(parts), 0, -1)] + [name]
        return next((self.files[c] for c in candidates if c in self.files), None)

    def __call__(self, name: str, spatial: tuple) -> np.ndarray | None:
        path = self.path_for(name)
        if path is None:
            return None
        key = (path, spatial)
        if key not in self._cache:
            self._cache[key] = load_mask(path, spatial)
        return self._cache[key]


def load_mask(path, spatial: tuple) -> np.ndarray:
    """A boolean mask of shape ``spatial`` from a PNG/JPEG (white = object) or a ``.npy``."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        mask = np.load(path, allow_pickle=False)
        if mask.shape != tuple(spatial):
            raise InvalidInput(f"mask {str(path)!r} has shape {mask.shape}; the relevance map is {tuple(spatial)}")
        return mask.astype(bool)
    from PIL import Image

    if len(spatial) != 2:
        raise InvalidInput(f"image mask {str(path)!r} needs a 2-D relevance map, got map shape {tuple(spatial)}; "
                           "give a .npy mask instead")
    try:
        with Image.open(path) as img:
            img.load()
            if "A" in img.getbands():
                gray = np.asarray(img.getchannel("A"), np.float32) * (np.asarray(img.convert("L"), np.float32) / 255)
                img = Image.fromarray(gray.astype(np.uint8))
            else:
                img = img.convert("L")
            if img.size != (spatial[1], spatial[0]):
                img = img.resize((spatial[1], spatial[0]), getattr(Image, "Resampling", Image).NEAREST)
            return np.asarray(img) >= 128
    except OSError as exc:
        raise InvalidInput(f"cannot read mask {str(path)!r} as an image ({exc})") from exc


def _batches(items: Iterator[Item], size: int) -> Iterator[list[Item]]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# --- the evaluation -------------------------------------------------------------------------

def evaluate(model, inputs, *, masks=None, methods=DEFAULT_METHODS, metrics=DEFAULT_METRICS, target=None,
             composite=None, settings: Settings | None = None, providers=None, progress: bool | None = None,
             channel_axis=M.AUTO) -> Report:
    """Evaluate ``methods`` with ``metrics`` on ``inputs``.

    Parameters
    ----------
    model : path, ModelProto or Explainer (its composite is the one ``lrp`` uses)
    inputs : files / directories (``.npy``, ``.npz``, images preprocessed as the model's metadata
        says) or an array (N, ...)
    masks : directory (see :class:`MaskFinder`), array (N, *map) or one map, or None
    methods : names or :class:`MethodSpec` / ``"name:key=value"`` strings
    metrics : groups of :data:`METRIC_GROUPS`; localisation ones are skipped without masks
    target : None (each sample's predicted class) or a class index for all
    composite : LRP composite when ``model`` is not an Explainer
    progress : draw a progress bar on stderr (default: when stderr is a terminal)
    """
    start = time.perf_counter()
    settings = settings or Settings()
    explainer = model if isinstance(model, Explainer) else Explainer(
        model, composite=composite or "epsilon_plus_flat", providers=providers)
    specs = [m if isinstance(m, MethodSpec) else MethodSpec.parse(m) for m in methods]
    _unique_labels(specs)
    groups = _metric_groups(metrics)
    items, total = iter_items(explainer, inputs)
    mask_of = _mask_source(masks, _input_files(inputs))
    report = Report(str(explainer.label), methods={s.label: {"method": s.name, "options": s.options} for s in specs},
                    metrics=groups, settings=asdict(settings))
    running = {s.label: {c: _Running() for g in groups for c in METRIC_GROUPS[g]} for s in specs}
    curves = {s.label: _Curves() for s in specs}
    randomisation_pool: list[Item] = []
    bar = _progress(total, progress)
    a = attributor(explainer)
    try:
        for batch in _batches(items, max(1, settings.batch_size)):
            x = np.concatenate([it.x for it in batch]).astype(np.float32)
            spatial = M._spatial_shape(x.shape, channel_axis)
            patch = settings.patch_for(spatial)
            targets = a.targets(x, target, settings.ort_batch)
            found = [mask_of(it, spatial, report.samples + i) for i, it in enumerate(batch)]
            for spec in specs:
                relevance = attribute(a, x, targets, spec.name, settings.ort_batch, **spec.resolved(settings, patch))
                _measure(a, x, relevance, targets, found, groups, settings, patch, channel_axis,
                         running[spec.label], curves[spec.label])
            report.samples += len(batch)
            report.samples_with_mask += sum(m is not None for m in found)
            if "model_randomisation" in groups and len(randomisation_pool) < settings.randomisation_samples:
                randomisation_pool += batch[:settings.randomisation_samples - len(randomisation_pool)]
            if bar:
                bar.advance(len(batch), batch[-1].name)
        if report.samples == 0:
            raise InvalidInput("no samples to evaluate")
        if "model_randomisation" in groups:
            _randomisation(a, randomisation_pool, target, specs, settings, channel_axis, running, report)
    finally:
        if bar:
            bar.close()
    report.values = {label: {c: r.result() for c, r in cols.items()} for label, cols in running.items()}
    report.curves = {label: c.result() for label, c in curves.items() if c.result() is not None}
    if any(g in groups for g in LOCALISATION) and report.samples_with_mask == 0:
        report.notes.append("no sample had a mask: relevance mass accuracy and pointing game are not reported")
    report.seconds = time.perf_counter() - start
    return report


def _measure(a, x, relevance, targets, masks, groups, settings: Settings, patch, channel_axis, out, curves):
    ort = settings.ort_batch
    if "region_perturbation" in groups:
        c = M.perturbation_curves(a, x, relevance, targets, patch=patch, steps=settings.steps,
                                  fraction=settings.fraction, baseline=settings.baseline, batch_size=ort,
                                  seed=settings.seed, channel_axis=channel_axis)
        out["aopc_morf"].add(c.aopc_morf)
        out["aopc_lerf"].add(c.aopc_lerf)
        out["morf_lerf_area"].add(c.area_between)
        curves.add(c)
    if "faithfulness_correlation" in groups:
        out["faithfulness_correlation"].add(M.faithfulness_correlation(
            a, x, relevance, targets, patch=patch, subset=settings.faithfulness_subset,
            runs=settings.faithfulness_runs, baseline=settings.baseline, batch_size=ort, seed=settings.seed,
            channel_axis=channel_axis))
    have = [i for i, m in enumerate(masks) if m is not None]
    if have and any(g in groups for g in LOCALISATION):
        r, mask = relevance[have], np.stack([masks[i] for i in have])
        if "relevance_mass_accuracy" in groups:
            out["relevance_mass_accuracy"].add(M.relevance_mass_accuracy(r, mask, channel_axis=channel_axis))
        if "pointing_game" in groups:
            out["pointing_game"].add(M.pointing_game(r, mask, tolerance=settings.pointing_tolerance,
                                                     channel_axis=channel_axis).astype(np.float64))


def _randomisation(a, pool, target, specs, settings, channel_axis, running, report):
    x = np.concatenate([it.x for it in pool]).astype(np.float32)
    spatial = M._spatial_shape(x.shape, channel_axis)
    patch = settings.patch_for(spatial)
    for spec in specs:
        result = M.model_randomisation(a, x, target, spec.name, layers=settings.randomisation_layers,
                                       seed=settings.seed, batch_size=settings.ort_batch, channel_axis=channel_axis,
                                       method_options=spec.resolved(settings, patch))
        running[spec.label]["randomisation_spearman"].add(result.correlation)
        report.randomisation[spec.label] = {"layers": result.layers, "spearman": result.per_layer,
                                            "samples": len(x), "notes": result.notes}
        report.notes += [f"model_randomisation, {spec.label}: {n}" for n in result.notes[1:]]


def _unique_labels(specs):
    labels = [s.label for s in specs]
    dup = {label for label in labels if labels.count(label) > 1}
    if dup:
        raise InvalidInput(f"methods {sorted(dup)!r} are listed twice")


def _metric_groups(metrics) -> list[str]:
    groups = []
    for m in metrics:
        group = m if m in METRIC_GROUPS else next((g for g, cols in METRIC_GROUPS.items() if m in cols), None)
        if group is None:
            raise InvalidInput(f"unknown metric {m!r}; choose from {list(METRIC_GROUPS)!r}")
        if group not in groups:
            groups.append(group)
    return groups


def _mask_source(masks, exclude=()):
    """A function (item, map shape, sample index) -> mask or None."""
    if masks is None:
        return lambda item, spatial, index: None
    if isinstance(masks, (str, Path)):
        finder = MaskFinder(masks, exclude)
        return lambda item, spatial, index: finder(item.name, spatial)
    arr = np.asarray(masks).astype(bool)

    def from_array(item, spatial, index):
        if arr.shape == tuple(spatial):
            return arr
        if arr.shape[1:] == tuple(spatial) and index < len(arr):
            return arr[index]
        raise InvalidInput(f"masks of shape {arr.shape} match neither one relevance map {tuple(spatial)} nor a "
                           "batch of them")
    return from_array


def _progress(total, enabled):
    from .progress import Progress

    return Progress(total or 0, enabled=enabled, unit="samples")


# --- command line ---------------------------------------------------------------------------

HELP = "measure how faithful explanations are (region perturbation, pointing game, ...) and gate on it"
USAGE = "onnx-lrp evaluate MODEL INPUTS... [--masks DIR] [--methods ...] [--metrics ...] [options]"
EXAMPLES = """examples:
  onnx-lrp evaluate models/efficientnet_lite0.onnx models/samples/cat_efficientnet_lite0.npy \\
      --masks models/samples --json report.json --junit report.xml --plots plots/
  onnx-lrp evaluate model.onnx data/ --methods lrp gradient occlusion:window=8,stride=4 random \\
      --metrics region_perturbation relevance_mass_accuracy --masks masks/ \\
      --fail-under lrp:relevance_mass_accuracy=0.6 --fail-under lrp:morf_lerf_area=0.5

methods: """ + ", ".join(METHODS) + """ (options as name:key=value,key=value)
metrics: """ + ", ".join(METRIC_GROUPS) + """
exit codes: 0 all gates pass, 1 a gate failed or an error, 2 usage error"""


def add_arguments(parser) -> None:
    parser.add_argument("model", metavar="MODEL", help="the ONNX model")
    parser.add_argument("inputs", metavar="INPUTS", nargs="+",
                        help=".npy/.npz/image files or directories of them (preprocessed as the model's metadata says)")
    parser.add_argument("--masks", metavar="DIR",
                        help="ground-truth masks (white = object): for sample cat_model_3, cat_model_3_mask, "
                             "cat_model_mask or cat_mask (.png, .npy, ...), or a file named cat_model_3")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), metavar="METHOD",
                        help=f"default: {' '.join(DEFAULT_METHODS)}")
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS), metavar="METRIC",
                        help=f"default: {' '.join(DEFAULT_METRICS)}")
    parser.add_argument("--composite", default="epsilon_plus_flat", help="LRP composite (default epsilon_plus_flat)")
    parser.add_argument("--target", type=int, default=None, help="class to explain (default: the predicted one)")
    parser.add_argument("--patch", type=int, default=None, help="patch size (default: min(H, W) // 14)")
    parser.add_argument("--steps", type=int, default=Settings.steps, help="perturbation steps (default 16)")
    parser.add_argument("--fraction", type=float, default=Settings.fraction,
                        help="share of patches removed by the last step (default 1.0)")
    parser.add_argument("--baseline", default="mean", type=_literal,
                        help="value of removed features: a number or 'mean' (default)")
    parser.add_argument("--faithfulness-runs", type=int, default=Settings.faithfulness_runs, metavar="N",
                        help="random patch subsets per sample (default 32)")
    parser.add_argument("--faithfulness-subset", type=float, default=Settings.faithfulness_subset, metavar="F",
                        help="share of the patches in each subset (default 0.1)")
    parser.add_argument("--randomisation-layers", type=int, default=Settings.randomisation_layers, metavar="N",
                        help="checkpoints along the cascade, the last with every layer random (default 4)")
    parser.add_argument("--randomisation-samples", type=int, default=Settings.randomisation_samples, metavar="N",
                        help="samples (the first ones) the randomisation check explains (default 4)")
    parser.add_argument("--pointing-tolerance", type=float, default=0.0, metavar="PX",
                        help="pointing game: a hit within this distance of the mask counts (default 0)")
    parser.add_argument("--batch-size", type=int, default=Settings.batch_size, help="samples per batch (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--providers", nargs="+", default=None, help="onnxruntime execution providers")
    parser.add_argument("--json", metavar="PATH", help="write the report as JSON")
    parser.add_argument("--junit", metavar="PATH", help="write a JUnit XML report (one case per method × metric)")
    parser.add_argument("--plots", metavar="DIR", help="write PNG perturbation curves")
    parser.add_argument("--fail-under", action="append", default=[], metavar="[METHOD:]METRIC=VALUE",
                        help="exit 1 when the metric is below VALUE (every method unless one is named)")
    parser.add_argument("--fail-over", action="append", default=[], metavar="[METHOD:]METRIC=VALUE",
                        help="exit 1 when the metric is above VALUE (for aopc_lerf, randomisation_spearman)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    gates = [Gate.parse(g, "under") for g in args.fail_under] + [Gate.parse(g, "over") for g in args.fail_over]
    settings = Settings(patch=args.patch, steps=args.steps, fraction=args.fraction, baseline=args.baseline,
                        faithfulness_runs=args.faithfulness_runs, faithfulness_subset=args.faithfulness_subset,
                        randomisation_layers=args.randomisation_layers,
                        randomisation_samples=args.randomisation_samples,
                        pointing_tolerance=args.pointing_tolerance, batch_size=args.batch_size, seed=args.seed)
    report = evaluate(args.model, args.inputs, masks=args.masks, methods=args.methods, metrics=args.metrics,
                      target=args.target, composite=args.composite, settings=settings, providers=args.providers,
                      progress=False if args.quiet else None)
    report.check(gates)
    print(report.table())
    for note in report.notes:
        print(f"note: {note}")
    if args.json:
        report.write_json(args.json)
    if args.junit:
        report.write_junit(args.junit)
    if args.plots:
        report.write_plots(args.plots)
    return 0 if report.passed else 1


def main(argv=None) -> int:
    """``python -m onnx_lrp.evaluate ...``: exit 0 / 1 (gate failed or error) / 2 (usage)."""
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message):
            print(f"onnx-lrp evaluate: error: {message} (see --help)", file=sys.stderr)
            raise SystemExit(2)

    parser = _Parser(prog="onnx-lrp evaluate", usage=USAGE, description=HELP, epilog=EXAMPLES,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    try:
        args = parser.parse_args(argv)
        return run(args)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    except OnnxLrpError as exc:
        print(f"onnx-lrp evaluate: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
