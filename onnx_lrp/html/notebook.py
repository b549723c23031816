"""HTML of an :class:`onnx_lrp.Explanation` for notebooks (``_repr_html_``): one card per sample
with the heatmap, and the picture and overlay when the input is an image the model's metadata
describes; the relevance through the network when it was kept."""
from __future__ import annotations

from .cards import card_html, explanation_card
from .page import esc, fragment

MAX_SAMPLES = 16


def explanation_html(explanation, max_samples: int = MAX_SAMPLES, cmap: str = "coldnhot") -> str:
    """Cards of the first ``max_samples`` samples of ``explanation`` (a fragment, no script)."""
    n = len(explanation.relevance)
    cards = [card_html(explanation_card(explanation, i, cmap=cmap, with_layers=i == 0))
             for i in range(min(n, max_samples))]
    more = f'<p class="meta">and {n - max_samples} more samples</p>' if n > max_samples else ""
    notes = "".join(f'<p class="note">note: {esc(t)}</p>' for t in explanation.notes)
    return fragment(f'{notes}<div class="grid">{"".join(cards)}</div>{more}')
