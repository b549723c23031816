"""Maps (domain, op_type) to the handler that propagates relevance through it.

A handler class registers itself with :func:`handles`; every module of :mod:`onnx_lrp.ops` is
imported the first time a handler is looked up, so a handler in a new file is found without
being listed anywhere.
"""
from __future__ import annotations

import importlib
import pkgutil

import onnx

from .base import Handler, unsupported

_HANDLERS: dict[tuple[str, str], Handler] = {}
#: (op_type, matcher, handler): matcher(node, g) -> bool picks a handler for a graph pattern
#: (e.g. x·sigmoid(x)) before the op type's own handler is consulted.
_PATTERNS: list[tuple[str, object, Handler]] = []


def handles(*op_types: str, domain: str = "", when=None):
    """Class decorator: an instance of the class handles ``op_types`` (of ``domain``), or, with
    ``when(node, graph) -> bool``, the nodes of those op types that match the pattern."""
    def decorate(cls):
        handler = cls()
        if when is None:
            register(handler, *op_types, domain=domain)
        else:
            for op_type in op_types:
                register_pattern(op_type, when, handler)
        return cls
    return decorate


def register(handler: Handler, *op_types: str, domain: str = "") -> None:
    """Register a handler instance (for families whose instances differ, e.g. one per activation)."""
    for op_type in op_types:
        _HANDLERS[(domain, op_type)] = handler


def register_pattern(op_type: str, matcher, handler: Handler) -> None:
    """Use ``handler`` for nodes of ``op_type`` where ``matcher(node, graph)`` is true."""
    _PATTERNS.append((op_type, matcher, handler))


def handler_for(node: onnx.NodeProto, g=None) -> Handler:
    handler = lookup(node, g)
    if handler is None:
        raise unsupported(node, "onnx-lrp has no handler for this op type")
    return handler


def lookup(node: onnx.NodeProto, g=None) -> Handler | None:
    _load_families()
    if g is not None:
        for op_type, matcher, handler in _PATTERNS:
            if op_type == node.op_type and matcher(node, g):
                return handler
    domain = "" if node.domain in ("", "ai.onnx") else node.domain
    return _HANDLERS.get((domain, node.op_type))


def supported_op_types() -> list[str]:
    """Every op type some handler registered (a composite's ``type_map`` may name them)."""
    _load_families()
    return sorted({op for _, op in _HANDLERS} | {op for op, _, _ in _PATTERNS})


_loaded = False


def _load_families() -> None:
    """Import every module of this package once; each registers its handlers on import."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    package = __name__.rpartition(".")[0]
    for module in sorted(m.name for m in pkgutil.iter_modules(importlib.import_module(package).__path__)):
        importlib.import_module(f"{package}.{module}")
