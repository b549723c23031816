"""Tokens coloured by relevance in a terminal: red positive, blue negative, white zero.

The colours are the HTML view's (the ``bwr`` map, normalised symmetrically by the largest
|relevance|), written as 24-bit ANSI background colours. Where colour is not wanted (output is not a
terminal, or ``NO_COLOR`` is set, https://no-color.org) each token is followed by its relevance.
"""
from __future__ import annotations

import os
import textwrap

import numpy as np

from .heatmap import apply_cmap, normalize_symmetric

CMAP = "bwr"
RESET = "\x1b[0m"


def use_colour(stream) -> bool:
    """Colour for a terminal, unless ``NO_COLOR`` is set (to anything but the empty string)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and not os.environ.get("NO_COLOR")


def tokens_text(tokens, relevance, colour: bool, width: int = 100) -> str:
    """The tokens as lines of at most ``width`` characters: coloured (``colour``), else ``token(+0.123)``."""
    r = np.asarray(relevance, np.float64).reshape(-1)
    tokens = [_printable(t) for t in tokens]
    if not colour:
        return textwrap.fill(" ".join(f"{t}({v:+.3g})" for t, v in zip(tokens, r)), width,
                             break_long_words=False, break_on_hyphens=False)
    lines, line, used = [], [], 0
    for token, rgb in zip(tokens, apply_cmap(normalize_symmetric(r), CMAP) if r.size else []):
        if line and used + len(token) + 1 > width:
            lines.append(" ".join(line))
            line, used = [], 0
        line.append(_painted(token, rgb))
        used += len(token) + 1
    lines.append(" ".join(line))
    return "\n".join(lines)


def legend(relevance, colour: bool) -> str:
    """What the colours (or numbers) mean, with the largest |relevance|."""
    r = np.asarray(relevance, np.float64)
    top = float(np.abs(r).max()) if r.size else 0.0
    if not colour:
        return f"(relevance per token after each; largest |relevance| {top:.3g})"
    low, mid, high = apply_cmap([0.0, 0.5, 1.0], CMAP)
    return (f"{_painted(f'-{top:.3g}', low)} {_painted(' 0 ', mid)} {_painted(f'+{top:.3g}', high)}"
            "  (red: for the target, blue: against it)")


def _printable(token: str) -> str:
    """Control characters (an escape sequence in a token) shown as escapes, never sent to the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(token))


def _painted(text: str, rgb) -> str:
    r, g, b = (int(c) for c in rgb)
    ink = 0 if 0.299 * r + 0.587 * g + 0.114 * b > 110 else 255  # black on light colours, white on dark
    return f"\x1b[48;2;{r};{g};{b}m\x1b[38;2;{ink};{ink};{ink}m{text}{RESET}"
