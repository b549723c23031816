"""The evaluation loop: every method explains each batch once, every metric measures it."""
from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np

from . import metrics as M
from ..attribution import attribute, attributor
from ..errors import InvalidInput
from ..explainer import Explainer
from .accumulate import MeanCurves, RunningMean
from .examples import Examples
from .dataset import Item, batches, input_files, iter_items, mask_source
from .report import Report
from .settings import DEFAULT_METHODS, DEFAULT_METRICS, LOCALISATION, METRIC_GROUPS, MethodSpec, Settings

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
    mask_of = mask_source(masks, input_files(inputs))
    report = Report(str(explainer.label), methods={s.label: {"method": s.name, "options": s.options} for s in specs},
                    metrics=groups, settings=asdict(settings))
    running = {s.label: {c: RunningMean() for g in groups for c in METRIC_GROUPS[g]} for s in specs}
    curves = {s.label: MeanCurves() for s in specs}
    randomisation_pool: list[Item] = []
    bar = _progress(total, progress)
    a = attributor(explainer)
    examples = Examples(settings.examples)
    try:
        for batch in batches(items, max(1, settings.batch_size)):
            x, spatial, patch = _stacked(batch, settings, channel_axis)
            targets = a.targets(x, target, settings.ort_batch)
            found = [mask_of(it, spatial, report.samples + i) for i, it in enumerate(batch)]
            examples.start_batch(batch, x, targets, found)
            for spec in specs:
                relevance = attribute(a, x, targets, spec.name, settings.ort_batch, **spec.resolved(settings, patch))
                examples.add(spec.label, relevance, channel_axis)
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
    _summarise(report, running, curves, groups)
    report.preprocess, labels = explainer.preprocess, explainer.labels
    report.examples = examples.samples
    for sample in report.examples:
        sample["target_label"] = labels[sample["target"]] if labels and sample["target"] < len(labels) else None
    report.seconds = time.perf_counter() - start
    return report


def _stacked(items: list[Item], settings: Settings, channel_axis):
    """The items as one float32 batch, its relevance-map shape and the patch size for it."""
    x = np.concatenate([it.x for it in items]).astype(np.float32)
    spatial = M._spatial_shape(x.shape, channel_axis)
    return x, spatial, settings.patch_for(spatial)


def _summarise(report: Report, running, curves, groups) -> None:
    """Move the running means into the report."""
    report.values = {label: {c: r.result() for c, r in cols.items()} for label, cols in running.items()}
    report.curves = {label: c.result() for label, c in curves.items() if c.result() is not None}
    if any(g in groups for g in LOCALISATION) and report.samples_with_mask == 0:
        report.notes.append("no sample had a mask: relevance mass accuracy and pointing game are not reported")


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
    x, _, patch = _stacked(pool, settings, channel_axis)
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



def _progress(total, enabled):
    from ..progress import Progress

    return Progress(total or 0, enabled=enabled, unit="samples")
