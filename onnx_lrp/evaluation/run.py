"""The evaluation loop: every method explains each batch once, every metric measures it."""
from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np

from . import metrics as M
from ..attribution import attribute, attributor
from ..errors import InvalidInput
from ..names import did_you_mean
from ..explainer import Explainer
from .accumulate import MeanCurves, OverSeeds, RunningMean
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
    specs = method_specs(methods)
    groups = metric_groups(metrics)
    items, total = iter_items(explainer, inputs)
    mask_of = mask_source(masks, input_files(inputs))
    report = Report(str(explainer.label), methods={s.label: {"method": s.name, "options": s.options} for s in specs},
                    metrics=groups, settings=asdict(settings))
    running = {s.label: _accumulators(groups) for s in specs}
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
            drops = _subset_drops(a, x, targets, groups, settings, patch, channel_axis)
            for spec in specs:
                relevance = attribute(a, x, targets, spec.name, settings.ort_batch, **spec.resolved(settings, patch))
                examples.add(spec.label, relevance, channel_axis)
                _measure(a, x, relevance, targets, found, groups, settings, patch, channel_axis,
                         running[spec.label], curves[spec.label], drops)
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


def _accumulators(groups) -> dict:
    """One running mean per report column; the random-dependent ones also track their spread."""
    out = {c: RunningMean() for g in groups for c in METRIC_GROUPS[g]}
    if "faithfulness_correlation" in out:
        out["faithfulness_correlation"] = RunningMean("bootstrap over the subsets")
    if "randomisation_spearman" in out:
        out["randomisation_spearman"] = OverSeeds()
    return out


def _subset_drops(a, x, targets, groups, settings: Settings, patch, channel_axis):
    """Faithfulness-correlation subsets, measured once per batch for every method (the drops do
    not depend on the explanation)."""
    if "faithfulness_correlation" not in groups:
        return None
    return M.subset_drops(a, x, targets, patch=patch, subset=settings.faithfulness_subset,
                          runs=settings.faithfulness_runs, baseline=settings.baseline, batch_size=settings.ort_batch,
                          seed=settings.seed, channel_axis=channel_axis)


def _measure(a, x, relevance, targets, masks, groups, settings: Settings, patch, channel_axis, out, curves, drops):
    ort = settings.ort_batch
    if "region_perturbation" in groups:
        c = M.perturbation_curves(a, x, relevance, targets, patch=patch, steps=settings.steps,
                                  fraction=settings.fraction, baseline=settings.baseline, batch_size=ort,
                                  seed=settings.seed, channel_axis=channel_axis)
        out["aopc_morf"].add(c.aopc_morf)
        out["aopc_lerf"].add(c.aopc_lerf)
        out["morf_lerf_area"].add(c.area_between)
        curves.add(c)
    if drops is not None:
        out["faithfulness_correlation"].add(
            M.faithfulness_correlation(a, x, relevance, targets, drops=drops, channel_axis=channel_axis),
            seed_std=M.faithfulness_spread(relevance, drops, seed=settings.seed, channel_axis=channel_axis))
    have = [i for i, m in enumerate(masks) if m is not None]
    if have and any(g in groups for g in LOCALISATION):
        r, mask = relevance[have], np.stack([masks[i] for i in have])
        if "relevance_mass_accuracy" in groups:
            out["relevance_mass_accuracy"].add(M.relevance_mass_accuracy(r, mask, channel_axis=channel_axis))
        if "pointing_game" in groups:
            out["pointing_game"].add(M.pointing_game(r, mask, tolerance=settings.pointing_tolerance,
                                                     channel_axis=channel_axis).astype(np.float64))


def _randomisation(a, pool, target, specs, settings: Settings, channel_axis, running, report):
    """The cascade for every method, once per re-initialisation seed; the column reads the chosen
    similarity, the report's ``randomisation`` section both."""
    x, _, patch = _stacked(pool, settings, channel_axis)
    seeds = [settings.seed + k for k in range(settings.randomisation_seeds)]
    for spec in specs:
        results = [M.model_randomisation(a, x, target, spec.name, layers=settings.randomisation_layers, seed=seed,
                                         similarity=settings.randomisation, batch_size=settings.ort_batch,
                                         channel_axis=channel_axis, method_options=spec.resolved(settings, patch))
                   for seed in seeds]
        for result in results:
            running[spec.label]["randomisation_spearman"].add_seed(result.correlation)
        report.randomisation[spec.label] = _randomisation_entry(results, seeds, len(x))
        constant = [int(np.isnan(r.correlation).sum()) for r in results]
        if any(constant):
            report.notes.append(f"model_randomisation, {spec.label}: {sum(constant)} of "
                                f"{sum(r.correlation.size for r in results)} explanations of a randomised model "
                                f"were constant (per seed: {', '.join(map(str, constant))}; e.g. the target output "
                                "is cut off by a ReLU): no ranking, left out")


def _randomisation_entry(results, seeds, samples) -> dict:
    """Per layer (mean over samples and seeds) and overall (mean ± std over seeds), for both
    similarities; ``spearman`` is the gated one."""
    entry = {"layers": results[0].layers, "similarity": results[0].similarity, "seeds": seeds, "samples": samples,
             "notes": results[0].notes}
    for kind in M.SIMILARITIES:
        over = OverSeeds()
        for r in results:
            over.add_seed(getattr(r, kind))
        summary = over.result()
        per_layer = np.stack([getattr(r, kind) for r in results], axis=1)  # (layers, seeds, samples)
        entry[kind] = {"per_layer": [_finite_mean(step) for step in per_layer], "mean": summary["mean"],
                       "seed_std": summary.get("seed_std", float("nan")), "per_seed": over.per_seed}
    entry["spearman"] = entry[entry["similarity"]]["per_layer"]
    return entry


def _finite_mean(values) -> float:
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def method_specs(methods) -> list[MethodSpec]:
    """``methods`` (names, ``"name:key=value"`` strings or :class:`MethodSpec`) parsed and checked:
    known names and options, no label twice (raises :class:`InvalidInput`)."""
    specs = [m if isinstance(m, MethodSpec) else MethodSpec.parse(m) for m in methods]
    labels = [s.label for s in specs]
    dup = {label for label in labels if labels.count(label) > 1}
    if dup:
        raise InvalidInput(f"methods {sorted(dup)!r} are listed twice")
    return specs


def metric_groups(metrics) -> list[str]:
    """The metric groups that compute ``metrics`` (group or column names; raises :class:`InvalidInput`)."""
    groups = []
    for m in metrics:
        group = m if m in METRIC_GROUPS else next((g for g, cols in METRIC_GROUPS.items() if m in cols), None)
        if group is None:
            known = list(METRIC_GROUPS) + [c for cols in METRIC_GROUPS.values() for c in cols]
            raise InvalidInput(f"unknown metric {m!r}{did_you_mean(m, known)}; choose from {list(METRIC_GROUPS)!r}")
        if group not in groups:
            groups.append(group)
    return groups



def _progress(total, enabled):
    from ..progress import Progress

    return Progress(total or 0, enabled=enabled, unit="samples")
