"""The evaluation report as HTML: the metrics per method with each gate's pass/fail, the mean
perturbation curves, the heatmaps of every method side by side for the first samples (with
their masks), and the model-randomisation check. One file, no script."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import images
from .charts import PALETTE, Series, line_chart
from .page import esc, fmt, fragment, page, write_page

DESCRIPTIONS = {
    "aopc_morf": "AOPC, most relevant first (higher is better)",
    "aopc_lerf": "AOPC, least relevant first (lower is better)",
    "morf_lerf_area": "area between the LeRF and MoRF curves (higher is better)",
    "faithfulness_correlation": "Pearson of relevance and output drop over random subsets (higher is better)",
    "relevance_mass_accuracy": "share of positive relevance inside the mask (higher is better)",
    "pointing_game": "share of samples whose top pixel is in the mask (higher is better)",
    "randomisation_spearman": "Spearman of |R| (or signed R, --randomisation) with the explanation of the "
                              "randomised model (lower is better)",
}


def report_table_html(report) -> str:
    """The metrics table with gate results, as a notebook fragment."""
    return fragment(_table(report))


def _table(report) -> str:
    columns = report.columns
    head = "".join(f'<th title="{esc(DESCRIPTIONS.get(c, c))}">{esc(c)}</th>' for c in columns)
    rows = []
    for method in report.methods:
        cells = []
        for c in columns:
            gates = [g for g in report.gates if g.method == method and g.metric == c]
            css = "" if not gates else (' class="pass"' if all(g.passed for g in gates) else ' class="fail"')
            tip = "; ".join(f"{'PASS' if g.passed else 'FAIL'} {g.gate}" for g in gates)
            entry = report.values.get(method, {}).get(c) or {}
            std = entry.get("std")
            tip = "; ".join(t for t in (f"std {fmt(std)}, n {entry.get('n', 0)}" if entry else "", tip) if t)
            cells.append(f'<td{css} title="{esc(tip)}">{_value(report, method, c)}</td>')
        rows.append(f'<tr><th class="l">{esc(method)}</th>{"".join(cells)}</tr>')
    gates = "".join(f'<li class="{"pass" if g.passed else "fail"}">{"PASS" if g.passed else "FAIL"} '
                    f'{esc(g.gate)} [{esc(g.method)}]: {fmt(g.value)}</li>' for g in report.gates)
    verdict = ""
    if report.gates:
        verdict = (f'<p class="{"pass" if report.passed else "fail"}">'
                   f'{"every gate passes" if report.passed else "a gate failed"}</p>')
    summary = (f'<p class="meta">{report.samples} samples ({report.samples_with_mask} with a mask); '
               f"{esc(report.model)}; {report.seconds:.1f} s</p>")
    return (f'<div class="wide"><table><tr><th class="l">method</th>{head}</tr>{"".join(rows)}</table></div>'
            f"{summary}{verdict}"
            + (f"<ul>{gates}</ul>" if gates else ""))


def _value(report, method: str, column: str) -> str:
    """The value, with ± its standard deviation over seeds for the random-dependent columns."""
    spread = report.seed_std(method, column)
    value = fmt(report.value(method, column))
    return value if not np.isfinite(spread) else f"{value} ± {fmt(spread)} <small>(seeds)</small>"


def evaluation_html(report, title: str | None = None, cmap: str = "coldnhot") -> str:
    """The whole report as one HTML document (see the module docstring)."""
    title = title or f"onnx-lrp evaluate: {Path(str(report.model)).name}"
    notes = "".join(f'<p class="note">note: {esc(n)}</p>' for n in report.notes)
    parts = [f"<h1>{esc(title)}</h1>", "<h2>Metrics</h2>", _table(report), notes,
             _curves(report), _samples(report, cmap), _randomisation(report), _settings(report)]
    return page(title, "".join(parts))


def write_evaluation_html(report, path, title: str | None = None, cmap: str = "coldnhot") -> Path:
    """Write :func:`evaluation_html` atomically to ``path``; returns it."""
    return write_page(Path(path), evaluation_html(report, title, cmap))


def _curves(report) -> str:
    if not report.curves:
        return ""
    series = []
    for i, (method, c) in enumerate(report.curves.items()):
        colour = PALETTE[i % len(PALETTE)]
        series.append(Series(f"{method} MoRF", np.asarray(c["fraction"]), np.asarray(c["morf"]), colour=colour))
        series.append(Series(f"{method} LeRF", np.asarray(c["fraction"]), np.asarray(c["lerf"]), True, colour))
    chart = line_chart(series, x_label="fraction of patches removed", y_label="target output", width=720,
                       height=320, markers=True)
    return ("<h2>Region perturbation</h2><p class=\"meta\">Mean target output as patches are replaced, most "
            "relevant first (MoRF, solid: a faithful explanation drops fast) and least relevant first (LeRF, "
            f"dashed: it should stay high).</p>{chart}")


def _samples(report, cmap: str) -> str:
    if not report.examples:
        return ""
    methods = list(report.examples[0]["maps"])
    pictures = [images.picture_from_input(s["input"], report.preprocess) for s in report.examples]
    show_picture = any(p is not None for p in pictures)
    show_mask = any(s["mask"] is not None for s in report.examples)
    head = ("<th>sample</th>" + ("<th>picture</th>" if show_picture else "") + ("<th>mask</th>" if show_mask else "")
            + "".join(f"<th>{esc(m)}</th>" for m in methods))
    rows = []
    for sample, picture in zip(report.examples, pictures):
        label = sample.get("target_label")
        target = f"target {sample['target']}" + (f" ({label})" if label is not None else "")
        cells = [f'<td class="l">{esc(sample["name"])}<br><span class="meta">{esc(target)}</span></td>']
        if show_picture:
            cells.append(f"<td>{_img(None if picture is None else images.picture_uri(picture), 'picture')}</td>")
        if show_mask:
            mask = sample["mask"]
            cells.append(f"<td>{_img(None if mask is None else images.mask_uri(_as_2d(mask, report)), 'mask')}</td>")
        for m in methods:
            rmap = sample["maps"].get(m)
            uri = None if rmap is None else images.heatmap_uri(_as_2d(rmap, report), cmap)
            cells.append(f"<td>{_img(uri, m)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    more = report.samples - len(report.examples)
    tail = f'<p class="meta">the first {len(report.examples)} of {report.samples} samples</p>' if more > 0 else ""
    return ("<h2>Heatmaps per sample</h2><p class=\"meta\">Each method's relevance for the explained class, "
            f"channels summed, normalised symmetrically per map ({esc(cmap)}: zero is the middle colour).</p>"
            f'<div class="wide"><table class="samples"><tr>{head}</tr>{"".join(rows)}</table></div>{tail}')


def _randomisation(report) -> str:
    if not report.randomisation:
        return ""
    series, tables = [], []
    for method, r in report.randomisation.items():
        layers = list(r.get("layers", []))
        values = np.asarray(r.get("spearman", []), np.float64)
        steps = np.arange(1, len(values) + 1, dtype=np.float64)
        tips = [f"{method}, step {k + 1}: randomised down to {name}: {fmt(v)}"
                for k, (name, v) in enumerate(zip(layers, values))]
        series.append(Series(method, steps, values, tips=tips))
        absolute = r.get("absolute", {}).get("per_layer", [np.nan] * len(layers))
        signed = r.get("signed", {}).get("per_layer", [np.nan] * len(layers))
        cells = "".join(f"<tr><td>{k + 1}</td><td class=\"l\">{esc(name)}</td><td>{fmt(a)}</td><td>{fmt(s)}</td></tr>"
                        for k, (name, a, s) in enumerate(zip(layers, absolute, signed)))
        tables.append(f"<details><summary>{esc(method)}: layers randomised at each step</summary><table>"
                      f'<tr><th>step</th><th class="l">deepest layer randomised</th><th>Spearman of |R|</th>'
                      f"<th>signed</th></tr>{cells}</table></details>")
    samples = next(iter(report.randomisation.values())).get("samples", "")
    chart = line_chart(series, x_label="cascade step (output layer first)", y_label="Spearman rank correlation",
                       width=720, height=300, markers=True, integer_x=True)
    return ("<h2>Model-randomisation check</h2><p class=\"meta\">Layers are re-initialised from the output "
            "down (Adebayo et al. 2018); the correlation of each explanation with the trained model's should "
            f"fall. A method that stays near 1 does not depend on the model; on |R| (the default) a "
            f"sign-flipped copy counts as the copy it is. {esc(samples)} samples, mean over "
            f"{esc(len(next(iter(report.randomisation.values())).get('seeds', [0])))} seeds.</p>"
            f"{chart}{''.join(tables)}")


def _settings(report) -> str:
    rows = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in report.settings.items())
    methods = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v.get('method'))} {esc(v.get('options') or '')}</dd>"
                      for k, v in report.methods.items())
    return f"<h2>Settings</h2><dl>{methods}{rows}</dl>"


def _as_2d(array, report) -> np.ndarray:
    """A map as 2-D: flat maps take the picture size from the preprocessing, else one row."""
    a = np.asarray(array)
    if a.ndim == 2:
        return a
    size = getattr(report.preprocess, "size", None)
    if a.ndim == 1 and size is not None and a.size == size[0] * size[1]:
        return a.reshape(size)
    return a.reshape(1, -1)


def _img(uri: str | None, alt: str) -> str:
    return "" if uri is None else f'<img src="{uri}" alt="{esc(alt)}">'


