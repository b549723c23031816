"""The frame of every HTML report: escaping, the page shell with its style sheet, a Content Security
Policy that allows nothing from the network, JSON for scripts, and writing the file.

Every string that comes from a model, a file name or a user (labels, node and tensor names,
metadata, notes) goes through :func:`esc` before it is put into markup. The policy admits only
``data:`` images, the page's own style sheet and the one script whose SHA-256 it names, so even a
string that slipped through escaping could not run.
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import math

from ..files import write_text

#: class prefix, so a fragment in a notebook does not clash with the notebook's own styles
STYLE = """
.olrp{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1b1b}
.olrp h1{font-size:20px;margin:8px 0}.olrp h2{font-size:17px;margin:20px 0 8px}
.olrp h3{font-size:15px;margin:12px 0 6px}
.olrp .meta{color:#555;margin:2px 0}
.olrp .bar{display:flex;flex-wrap:wrap;gap:8px;align-items:center;margin:10px 0;position:sticky;top:0;
 background:#fff;padding:6px 0;z-index:1}
.olrp .grid{display:flex;flex-wrap:wrap;gap:10px}
.olrp .card{border:1px solid #ddd;border-radius:6px;padding:8px;width:416px;box-sizing:border-box}
.olrp .card .name{font-weight:600;word-break:break-all}
.olrp .imgs{display:flex;gap:4px;margin:6px 0}
.olrp figure{margin:0;text-align:center;font-size:11px;color:#666}
.olrp .imgs img{width:128px;height:128px;object-fit:contain;background:#f4f4f4;image-rendering:pixelated}
.olrp .small img{width:64px;height:64px;object-fit:contain;background:#f4f4f4;image-rendering:pixelated}
.olrp .small figure{width:72px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.olrp .layers{display:flex;flex-wrap:wrap;gap:4px}
.olrp dl{display:grid;grid-template-columns:auto 1fr;gap:0 10px;margin:4px 0}
.olrp dt{color:#555}.olrp dd{margin:0;word-break:break-word}
.olrp .note{color:#8a5a00;font-size:12px;margin:2px 0}
.olrp table{border-collapse:collapse;margin:6px 0}
.olrp th,.olrp td{border:1px solid #ddd;padding:3px 8px;text-align:right}
.olrp th{background:#f4f4f4}.olrp td.l,.olrp th.l{text-align:left}
.olrp .pass{background:#dff3e3}.olrp .fail{background:#fbdcdc;font-weight:600}
.olrp .tokens span{padding:1px 2px;margin:1px;border-radius:3px;display:inline-block}
.olrp .samples td{vertical-align:top;text-align:center}
.olrp .samples img{width:112px;height:112px;object-fit:contain;background:#f4f4f4;image-rendering:pixelated;
 outline:1px solid #ccc}
.olrp .wide{overflow-x:auto;max-width:100%}
.olrp svg text{font-size:11px;fill:#333}
.olrp details summary{cursor:pointer;color:#0b57d0}
"""


def esc(value) -> str:
    """``value`` as text safe inside HTML elements and quoted attributes."""
    return html.escape("" if value is None else str(value), quote=True)


def fmt(value, digits: int = 4) -> str:
    """A number for people: ``digits`` significant digits; ``–`` for missing or NaN."""
    if value is None:
        return "–"
    value = float(value)
    return f"{value:.{digits}g}" if math.isfinite(value) else "–"


def script_json(document) -> str:
    """JSON that can sit inside ``<script type="application/json">``: ``<``, ``>`` and ``&`` are
    written as ``\\u003c`` ... so no string can close the element."""
    text = json.dumps(document, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def page(title: str, body: str, script: str = "") -> str:
    """A whole HTML document: ``body`` (markup) inside the report frame, ``script`` (JavaScript) last."""
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    policy = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
              f"script-src 'sha256-{digest}'" if script else
              "default-src 'none'; img-src data:; style-src 'unsafe-inline'")
    tail = f"<script>{script}</script>" if script else ""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{esc(title)}</title><style>{STYLE}</style></head>\n"
            f'<body class="olrp">{body}{tail}</body></html>\n')


def fragment(body: str) -> str:
    """Markup for a notebook cell: the style sheet (its rules are scoped to ``.olrp``) and ``body``."""
    return f'<div class="olrp"><style>{STYLE}</style>{body}</div>'


def write_page(path, text: str):
    """Write the document atomically (temporary name, then rename); returns the path."""
    return write_text(path, text, "HTML ")
