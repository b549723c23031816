"""Self-contained HTML reports: one file, images inline as data URIs, charts as SVG, nothing
loaded from the network, every model-provided string escaped.

- :class:`ExplainReport`: the explain command's ``index.html``, one card per input (picture,
  overlay, heatmap, prediction, target, conservation, notes), sortable and filterable, images
  loaded as cards scroll into view;
- :func:`evaluation_html`: an evaluation's metrics with gate results, perturbation curves, the
  heatmaps of every method per sample, masks and the model-randomisation check;
- :func:`layers_html`: relevance through the network (``keep_layers``);
- :func:`tokens_page`: one explained text, its tokens highlighted, with a colour bar (``NAME.tokens.html``);
- :func:`explanation_html` / :func:`report_table_html`: what notebooks show for an
  :class:`onnx_lrp.Explanation` and an evaluation :class:`~onnx_lrp.evaluation.Report`.
"""
from .cards import Card, ExplainReport, card_html, make_card, tokens_html
from .evaluation import evaluation_html, report_table_html, write_evaluation_html
from .images import picture_from_input
from .layers import layers_html
from .notebook import explanation_html
from .tokens import colour_bar, tokens_page, write_tokens_page

__all__ = ["Card", "ExplainReport", "card_html", "colour_bar", "evaluation_html", "explanation_html", "layers_html",
           "make_card", "picture_from_input", "report_table_html", "tokens_html", "tokens_page", "write_evaluation_html",
           "write_tokens_page"]
