"""Relevance through the network (``keep_layers``): a small heatmap of every kept tensor in graph
order from the output to the input, and a chart of Σ relevance per tensor.

Along a chain of layers a conserving explanation keeps Σ relevance equal to the explained output;
where the line drops or jumps, relevance is absorbed (biases, the ε stabiliser) or created (rules
that do not conserve), which is what to look at when the conservation ratio surprises. Where the
graph branches (residual connections), a tensor inside a branch holds only that branch's share:
a drop after an ``Add`` is a split, not a loss.
"""
from __future__ import annotations

import numpy as np

from . import images
from .charts import Series, line_chart
from .page import esc, fmt

LAYER_THUMB = 64


def layer_map(relevance: np.ndarray) -> np.ndarray | None:
    """One sample's relevance at a tensor (batch axis first, of size 1, or none) as a 2-D map.

    Rank 3 (C, H, W) or (H, W, C): channels summed; which axis holds the channels is guessed from
    the spatial axes being the pair of equal size (else channels first, ONNX's usual layout).
    Rank 2 is shown as is (e.g. tokens × features), rank 1 as a strip; higher ranks sum their
    leading axes. None for a scalar.
    """
    r = np.asarray(relevance, np.float64)
    r = r[0] if r.ndim >= 1 and r.shape[0] == 1 and r.ndim > 1 else r
    while r.ndim > 3:
        r = r.sum(axis=0)
    if r.ndim == 3 and r.shape[1] * r.shape[2] == 1:  # (C, 1, 1) after global pooling: the channels
        return r.reshape(1, -1)
    if r.ndim == 3 and r.shape[0] * r.shape[1] == 1:
        return r.reshape(1, -1)
    if r.ndim == 3:
        channels_last = r.shape[0] == r.shape[1] and r.shape[1] != r.shape[2]
        return r.sum(axis=2 if channels_last else 0)
    if r.ndim == 2:
        return r
    if r.ndim == 1 and r.size > 1:
        return r[None, :]
    return None


def layer_rows(layers: dict[str, np.ndarray]) -> list[tuple[str, tuple, float, np.ndarray | None]]:
    """(tensor name, shape without the batch axis, Σ relevance, 2-D map) per kept tensor, in order."""
    rows = []
    for name, value in layers.items():
        value = np.asarray(value)
        sample = value[0] if value.ndim >= 1 and value.shape[0] == 1 else value
        rows.append((name, tuple(sample.shape), float(sample.sum(dtype=np.float64)), layer_map(value)))
    return rows


def layers_html(layers: dict[str, np.ndarray], output: float | None = None, cmap: str = "coldnhot",
                lazy: bool = False) -> str:
    """The chart of Σ relevance per tensor and the small heatmaps, as markup.

    Parameters
    ----------
    layers : tensor name -> relevance of one sample, output side first (as
        :attr:`onnx_lrp.Explanation.layers` keeps them)
    output : the explained output value (the line a conserving explanation stays on)
    lazy : images load when scrolled into view (the page's script fills ``src`` from ``data-src``)
    """
    rows = layer_rows(layers)
    if not rows:
        return ""
    steps = np.arange(len(rows), dtype=np.float64)
    totals = np.array([r[2] for r in rows])
    tips = [f"{i}: {name} {list(shape)}: Σ R = {fmt(total, 6)}" for i, (name, shape, total, _) in enumerate(rows)]
    chart = line_chart([Series("Σ relevance", steps, totals, tips=tips)],
                       x_label="tensor, output (0) → input", y_label="Σ relevance", markers=len(rows) <= 60,
                       width=398, height=220, legend=False, integer_x=True,
                       reference=None if output is None else (float(output), f"explained output {fmt(output)}"))
    figures = []
    for i, (name, shape, total, rmap) in enumerate(rows):
        title = esc(f"{i}: {name} {list(shape)} Σ R = {fmt(total, 6)}")
        image = "" if rmap is None else _img(images.heatmap_uri(rmap, cmap, LAYER_THUMB), lazy, rmap.shape[0] == 1)
        figures.append(f'<figure title="{title}">{image}<figcaption>{esc(name)}</figcaption></figure>')
    return (f"<div>{chart}</div><p class=\"meta\">{len(rows)} tensors; hover a point or a map for its name "
            f"and Σ relevance</p><div class=\"layers small\">{''.join(figures)}</div>")


def _img(uri: str, lazy: bool, strip: bool) -> str:
    style = ' style="height:12px;object-fit:fill"' if strip else ""
    source = f'data-src="{uri}"' if lazy else f'src="{uri}"'
    return f'<img {source} alt=""{style}>'
