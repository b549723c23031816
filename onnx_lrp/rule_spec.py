"""Rules written as text, for the command line: ``Pass``, ``Epsilon(0.25)``, ``AlphaBeta(1, 0)``."""
from __future__ import annotations

import re

from . import rules
from .errors import CompositeError
from .names import did_you_mean

_SPEC = re.compile(r"^\s*([A-Za-z]+)\s*(?:\((.*)\))?\s*$")
#: Rules that need array arguments cannot be written on the command line.
_NOT_FROM_TEXT = {"ZBox"}


def parse_rule(text: str) -> rules.Rule:
    """A rule from its class name and optional numeric arguments, e.g. ``Gamma(0.5)``."""
    match = _SPEC.match(text)
    names = {name.lower(): name for name in rules.RULES if name not in _NOT_FROM_TEXT}
    if not match or match.group(1).lower() not in names:
        word = match.group(1) if match else text
        raise CompositeError(f"unknown rule {text!r}{did_you_mean(word, sorted(names.values()))}; write one of "
                             f"{sorted(names.values())!r}, "
                             "optionally with numbers, e.g. Epsilon(0.25)")
    cls = rules.RULES[names[match.group(1).lower()]]
    try:
        args = [float(a) for a in match.group(2).split(",")] if match.group(2) and match.group(2).strip() else []
        return cls(*args)
    except (TypeError, ValueError) as exc:
        raise CompositeError(f"rule {text!r}: {exc}") from exc


def parse_assignments(items: list[str] | None, flag: str) -> dict[str, rules.Rule]:
    """``["NAME=RULE", ...]`` (node names or op types) to a map for a composite."""
    assigned = {}
    for item in items or []:
        key, sep, rule = item.partition("=")
        if not sep or not key.strip():
            raise CompositeError(f"{flag} {item!r}: write {flag} NAME=RULE, e.g. {flag} 'Mul_3=Pass'")
        assigned[key.strip()] = parse_rule(rule)
    return assigned
