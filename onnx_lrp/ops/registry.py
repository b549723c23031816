"""Maps (domain, op_type) to the handler that propagates relevance through it."""
from __future__ import annotations

import onnx

from .base import Handler, unsupported

_HANDLERS: dict[tuple[str, str], Handler] = {}


def register(handler: Handler, *op_types: str, domain: str = "") -> None:
    for op_type in op_types:
        _HANDLERS[(domain, op_type)] = handler


def handler_for(node: onnx.NodeProto) -> Handler:
    _load_families()
    domain = "" if node.domain in ("", "ai.onnx") else node.domain
    handler = _HANDLERS.get((domain, node.op_type))
    if handler is None:
        raise unsupported(node, "onnx-lrp has no handler for this op type")
    return handler


def lookup(node: onnx.NodeProto) -> Handler | None:
    _load_families()
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
