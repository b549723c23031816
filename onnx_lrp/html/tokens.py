"""The page of one explained text (``NAME.tokens.html``): the tokens highlighted by relevance
(:func:`~onnx_lrp.html.tokens_html`, each token's value on hover), a colour bar from −max to +max,
what was explained, and a table of every token's relevance. One file, no script."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..heatmap import apply_cmap
from .cards import tokens_html
from .page import esc, fmt, page, write_page

CMAP = "bwr"
BAR_STOPS = 11


def colour_bar(relevance, cmap: str = CMAP) -> str:
    """A horizontal bar of the colour map, labelled −max|R|, 0 and +max|R|."""
    r = np.asarray(relevance, np.float64)
    top = float(np.abs(r).max()) if r.size else 0.0
    stops = ",".join(f"rgb({c[0]},{c[1]},{c[2]})" for c in apply_cmap(np.linspace(0, 1, BAR_STOPS), cmap))
    return (f'<div style="max-width:420px;margin:8px 0"><div style="height:14px;border:1px solid #ccc;'
            f'background:linear-gradient(to right,{stops})"></div>'
            f'<div class="meta" style="display:flex;justify-content:space-between">'
            f"<span>{esc(fmt(-top, 3))} (against)</span><span>0</span><span>{esc(fmt(top, 3))} (for)</span>"
            "</div></div>")


def tokens_page(title: str, tokens, relevance, facts: dict | None = None, notes=(), cmap: str = CMAP) -> str:
    """The whole document: ``facts`` (name -> value, shown as text), the highlighted tokens, the
    colour bar, ``notes`` and the table of tokens and values."""
    r = np.asarray(relevance, np.float64).reshape(-1)
    rows = "".join(f'<tr><td>{i}</td><td class="l">{esc(t)}</td><td>{esc(fmt(v, 4))}</td></tr>'
                   for i, (t, v) in enumerate(zip(tokens, r)))
    facts_html = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in (facts or {}).items())
    notes_html = "".join(f'<p class="note">note: {esc(n)}</p>' for n in notes)
    body = (f"<h1>{esc(title)}</h1>{tokens_html(tokens, r, cmap)}{colour_bar(r, cmap)}<dl>{facts_html}</dl>"
            f"{notes_html}<details><summary>relevance of every token ({len(r)})</summary>"
            f'<table><tr><th>#</th><th class="l">token</th><th>relevance</th></tr>{rows}</table></details>')
    return page(title, body)


def write_tokens_page(path, title: str, tokens, relevance, facts: dict | None = None, notes=()) -> Path:
    """Write :func:`tokens_page` (atomically) to ``path``; returns it."""
    return write_page(Path(path), tokens_page(title, tokens, relevance, facts, notes))
