"""One card per explained input (picture, overlay, heatmap, prediction, target, conservation,
notes, highlighted tokens, relevance through the network) and the explain report that pages
through many of them.

The report is one HTML file: every card is in the markup with its thumbnails as data URIs in
``data-src``; a few lines of script put an image's ``src`` in place when its card scrolls into
view (so 1,000 inputs open at once and decode as you scroll), sort the cards and filter them by
label or text. Without script the first cards still show their pictures.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import images
from ..errors import InvalidInput
from .layers import layers_html
from .page import esc, fmt, page, write_page

EAGER_CARDS = 12  # cards whose images load without waiting for the script (and without script)

SORT_KEYS = (("name", "name"), ("score", "score (predicted output)"), ("output", "target output"),
             ("conservation", "conservation"), ("label", "predicted label"))


@dataclass
class Card:
    """What one card shows. ``images`` maps picture/overlay/heatmap to data URIs; ``links`` maps a
    caption to a file beside the report (full-size results); ``extra`` is trusted markup (already
    escaped) such as the relevance-through-the-network panel."""

    name: str
    source: str = ""
    predicted: int | None = None
    predicted_label: str | None = None
    score: float | None = None
    target: int | None = None
    target_label: str | None = None
    output: float | None = None
    relevance_sum: float | None = None
    conservation: float | None = None
    notes: list = field(default_factory=list)
    images: dict = field(default_factory=dict)
    links: dict = field(default_factory=dict)
    tokens: str = ""
    extra: str = ""


def make_card(summary: dict, picture=None, rmap=None, cmap: str = "coldnhot", layers: dict | None = None,
              links: dict | None = None, tokens=None, lazy_layers: bool = False) -> Card:
    """A card from an explain summary (``NAME.json``'s fields) and what to show.

    Parameters
    ----------
    picture : PIL.Image, the input as a picture (None: no picture or overlay)
    rmap : 2-D relevance map (None: no heatmap, e.g. a vector input)
    layers : tensor name -> relevance at that tensor (``keep_layers``), output side first
    links : caption -> path relative to the report, e.g. ``{"heatmap": "cat.heatmap.png"}``
    tokens : (tokens, relevance per token) for text inputs
    lazy_layers : the layer maps wait in ``data-src`` for the report page's script
    """
    shown = {}
    if picture is not None:
        shown["picture"] = images.picture_uri(picture)
    if picture is not None and rmap is not None:
        shown["overlay"] = images.overlay_uri(picture, rmap, cmap)
    if rmap is not None:
        shown["heatmap"] = images.heatmap_uri(rmap, cmap)
    extra = ""
    if layers:
        extra = (f"<details><summary>relevance through the network ({len(layers)} tensors)</summary>"
                 f"{layers_html(layers, summary.get('output'), cmap, lazy=lazy_layers)}</details>")
    where = summary.get("input", "")
    if summary.get("index") is not None:
        where = f"{where}[{summary['index']}]"
    return Card(name=str(summary.get("name", "")), source=str(where), predicted=summary.get("predicted"),
                predicted_label=summary.get("predicted_label"), score=summary.get("predicted_output"),
                target=summary.get("target"), target_label=summary.get("target_label"),
                output=summary.get("output"), relevance_sum=summary.get("relevance_sum"),
                conservation=summary.get("conservation"), notes=list(summary.get("notes") or []),
                images=shown, links=dict(links or {}), tokens=tokens_html(*tokens) if tokens else "", extra=extra)


def explanation_card(explanation, i: int, name: str | None = None, cmap: str = "coldnhot",
                     with_layers: bool = True, lazy_layers: bool = False) -> Card:
    """The card of sample ``i`` of an :class:`onnx_lrp.Explanation`: its heatmap, and its picture and
    overlay when the model's metadata says how the input was made from a picture."""
    from ..render import relevance_map

    pre = explanation.preprocess
    x = None if explanation.input is None else explanation.input[i:i + 1]
    picture = None if x is None else images.picture_from_input(x, pre)
    try:
        rmap = relevance_map(explanation.relevance[i:i + 1], pre or _guess_layout(explanation.relevance))
    except InvalidInput:  # no 2-D map fits this shape: the card shows the numbers only
        rmap = None
    layers = {k: v[i:i + 1] for k, v in explanation.layers.items()} if with_layers and explanation.layers else None
    return make_card(summary_of(explanation, i, name), picture, rmap, cmap, layers, lazy_layers=lazy_layers)


def summary_of(explanation, i: int, name: str | None = None) -> dict:
    """The fields of an explain summary (``NAME.json``) for sample ``i`` of an Explanation."""
    labels = explanation.labels
    flat = explanation.output.reshape(len(explanation.output), -1)
    predicted, target = int(explanation.prediction[i]), int(explanation.target[i])
    total = float(explanation.relevance[i].sum(dtype=np.float64))
    output = float(flat[i, target])

    def label(k):
        return labels[k] if labels is not None and 0 <= k < len(labels) else None

    return {"name": f"sample {i}" if name is None else name, "predicted": predicted,
            "predicted_label": label(predicted), "predicted_output": float(flat[i, predicted]), "target": target,
            "target_label": label(target), "output": output, "relevance_sum": total,
            "conservation": total / output if output else None, "notes": []}


def _guess_layout(relevance):
    from ..metadata import Preprocess

    shape = relevance.shape
    channels_last = len(shape) == 4 and shape[3] in (1, 3, 4) and shape[1] not in (1, 3, 4)
    return Preprocess(layout="nhwc" if channels_last else ("nchw" if len(shape) == 4 else None))


def tokens_html(tokens, relevance, cmap: str = "bwr") -> str:
    """Tokens highlighted by their relevance (symmetric: white is zero), each with its value on hover."""
    from ..heatmap import apply_cmap, normalize_symmetric

    r = np.asarray(relevance, np.float64).reshape(-1)
    colours = apply_cmap(normalize_symmetric(r), cmap) if r.size else np.zeros((0, 3), np.uint8)
    spans = [f'<span style="background:rgb({c[0]},{c[1]},{c[2]})" title="{fmt(v, 4)}">{esc(t)}</span>'
             for t, v, c in zip(tokens, r, colours)]
    return f'<div class="tokens">{"".join(spans)}</div>'


def card_html(card: Card, lazy: bool = False) -> str:
    """The card's markup; with ``lazy`` its images wait in ``data-src`` for the page's script."""
    label = "" if card.predicted_label is None else str(card.predicted_label)
    search = " ".join(str(v) for v in (card.name, card.source, label, card.target_label or "", *card.notes)).lower()
    data = {"name": card.name, "label": label, "score": _num(card.score), "output": _num(card.output),
            "conservation": _num(card.conservation), "search": search}
    attributes = " ".join(f'data-{k}="{esc(v)}"' for k, v in data.items())
    figures = "".join(f'<figure>{_img(uri, kind, lazy)}<figcaption>{kind}</figcaption></figure>'
                      for kind, uri in card.images.items())
    rows = [("predicted", _class(card.predicted_label, card.predicted, card.score))]
    if card.target is not None and card.target != card.predicted:
        rows.append(("explained", _class(card.target_label, card.target, card.output)))
    rows.append(("relevance sum", f"{fmt(card.relevance_sum)} (conservation {fmt(card.conservation)})"))
    facts = "".join(f"<dt>{name}</dt><dd>{esc(value)}</dd>" for name, value in rows)
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in card.notes)
    links = " · ".join(f'<a href="{esc(href)}">{esc(caption)}</a>' for caption, href in card.links.items())
    return (f'<div class="card" {attributes}><div class="name" title="{esc(card.source)}">{esc(card.name)}</div>'
            + (f'<div class="imgs">{figures}</div>' if figures else "") + card.tokens
            + f"<dl>{facts}</dl>{notes}{card.extra}"
            + (f'<p class="meta">files: {links}</p>' if links else "") + "</div>")


def _img(uri: str, alt: str, lazy: bool) -> str:
    return f'<img {"data-src" if lazy else "src"}="{uri}" alt="{esc(alt)}">'


def _class(label, index, value) -> str:
    name = f"{label} (class {index})" if label is not None else f"class {index}"
    return f"{name}, output {fmt(value)}"


def _num(value) -> str:
    return "" if value is None or not np.isfinite(float(value)) else repr(float(value))


# --- the page ----------------------------------------------------------------------------------
SCRIPT = """(function(){
const grid=document.getElementById('cards'),q=document.getElementById('q'),lab=document.getElementById('label'),
by=document.getElementById('sort'),dir=document.getElementById('dir'),count=document.getElementById('count');
const cards=Array.from(grid.children);
function load(img){if(img.dataset.src){img.src=img.dataset.src;img.removeAttribute('data-src');}}
const io='IntersectionObserver' in window?new IntersectionObserver(function(es){es.forEach(function(e){
if(e.isIntersecting){load(e.target);io.unobserve(e.target);}});},{rootMargin:'800px'}):null;
document.querySelectorAll('img[data-src]').forEach(function(i){io?io.observe(i):load(i);});
function key(c){const v=c.dataset[by.value];return by.value==='name'||by.value==='label'?v:(v===''?NaN:+v);}
function cmp(a,b){const x=key(a),y=key(b),s=dir.dataset.desc==='1'?-1:1;
if(typeof x==='string')return s*x.localeCompare(y,undefined,{numeric:true});
if(isNaN(x)||isNaN(y))return isNaN(x)-isNaN(y);return s*(x-y);}
function apply(){const t=q.value.trim().toLowerCase(),want=lab.value;let shown=0;
cards.slice().sort(cmp).forEach(function(c){const ok=(!t||c.dataset.search.indexOf(t)>=0)&&(!want||c.dataset.label===want);
c.hidden=!ok;shown+=ok;grid.appendChild(c);});count.textContent=shown+' of '+cards.length+' inputs';}
q.addEventListener('input',apply);lab.addEventListener('change',apply);by.addEventListener('change',apply);
dir.addEventListener('click',function(){const d=dir.dataset.desc!=='1';dir.dataset.desc=d?'1':'0';
dir.textContent=d?'descending':'ascending';apply();});
apply();})();"""


class ExplainReport:
    """Collects one card per explained input and writes the report page.

    Thumbnails are made as inputs are added (the full-size pictures are not kept), so a long run
    holds a few tens of kilobytes per input.

    Parameters
    ----------
    title : the page title (e.g. the model file)
    facts : name -> value shown under the title (model, composite, providers, ...)
    notes : what onnx-lrp changed to explain the model
    cmap : heatmap colour map
    """

    def __init__(self, title: str, facts: dict | None = None, notes=(), cmap: str = "coldnhot"):
        self.title, self.facts, self.notes, self.cmap = title, dict(facts or {}), list(notes), cmap
        self.cards: list[Card] = []
        self.failed: list[tuple[str, str]] = []

    def add(self, summary: dict, picture=None, rmap=None, layers=None, links=None, tokens=None) -> Card:
        return self.add_card(self.card(summary, picture, rmap, layers, links, tokens))

    def card(self, summary: dict, picture=None, rmap=None, layers=None, links=None, tokens=None) -> Card:
        """The card :meth:`add` adds, made without adding it (thread-safe: writers make cards, then the
        run adds them in input order with :meth:`add_card`)."""
        return make_card(summary, picture, rmap, self.cmap, layers, links, tokens, lazy_layers=True)

    def add_card(self, card: Card) -> Card:
        self.cards.append(card)
        return card

    def add_explanation(self, explanation, names=None) -> list[Card]:
        """A card for every sample of an :class:`onnx_lrp.Explanation` (``names``: one per sample)."""
        added = []
        for i in range(len(explanation.relevance)):
            name = None if names is None else names[i]
            added.append(explanation_card(explanation, i, name, self.cmap, lazy_layers=True))
        self.cards += added
        return added

    def add_error(self, where: str, message: str) -> None:
        self.failed.append((where, message))

    def html(self) -> str:
        labels = sorted({c.predicted_label for c in self.cards if c.predicted_label is not None}, key=str)
        options = "".join(f'<option value="{esc(v)}">{esc(v)}</option>' for v in labels)
        sorts = "".join(f'<option value="{k}">{name}</option>' for k, name in SORT_KEYS)
        facts = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in self.facts.items())
        notes = "".join(f'<p class="note">note: {esc(n)}</p>' for n in self.notes)
        errors = "".join(f'<p class="note">error: {esc(w)}: {esc(m)}</p>' for w, m in self.failed)
        bar = (f'<div class="bar"><input id="q" type="search" placeholder="filter: name, label, note" size="28">'
               f'<select id="label"><option value="">every predicted label</option>{options}</select>'
               f'<label>sort by <select id="sort">{sorts}</select></label>'
               f'<button id="dir" type="button" data-desc="0">ascending</button>'
               f'<span id="count" class="meta">{len(self.cards)} inputs</span></div>')
        cards = "".join(card_html(c, lazy=i >= EAGER_CARDS) for i, c in enumerate(self.cards))
        body = (f"<h1>{esc(self.title)}</h1><dl>{facts}</dl>{notes}{errors}"
                "<noscript><p class=\"note\">Script is off: sorting, filtering and the pictures of cards "
                f"after the first {EAGER_CARDS} need it.</p></noscript>"
                f'{bar}<div id="cards" class="grid">{cards}</div>')
        return page(self.title, body, SCRIPT)

    def write(self, path) -> Path:
        """Write the page (atomically) to ``path``; returns it."""
        return write_page(Path(path), self.html())
