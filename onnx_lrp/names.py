"""Suggestions for a misspelt name the user gave (node, op type, input, output, rule, composite)."""
from __future__ import annotations

import difflib


def close_matches(name, known) -> list[str]:
    """Up to three known names close to ``name``: same spelling up to case first, then difflib's."""
    names = [str(k) for k in known]
    close = [k for k in names if k.casefold() == str(name).casefold() and k != str(name)]
    close += [k for k in difflib.get_close_matches(str(name), names, n=3, cutoff=0.6) if k not in close]
    return close[:3]


def did_you_mean(name, known) -> str:
    """`` (did you mean 'conv1'?)`` for the close matches of ``name`` among ``known``, else ``""``."""
    close = close_matches(name, known)
    return f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
