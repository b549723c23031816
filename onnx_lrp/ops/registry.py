"""Maps (domain, op_type) to the handler that propagates relevance through it."""
from __future__ import annotations

import onnx

from .base import Handler, unsupported

_HANDLERS: dict[tuple[str, str], Handler] = {}
#: (op_type, matcher, handler): matcher(node, g) -> bool picks a handler for a graph pattern
#: (e.g. x·sigmoid(x)) before the op type's own handler is consulted.
_PATTERNS: list[tuple[str, object, Handler]] = []


def register(handler: Handler, *op_types: str, domain: str = "") -> None:
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
    _load_families()
    return sorted(op for _, op in _HANDLERS)


_loaded = False


def _load_families() -> None:
    """Import every family module once; each registers its handlers on import."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from . import activation, elementwise, linear, normalization, pool, shape  # noqa: F401
    from . import gather, gating, layernorm, resize  # noqa: F401
