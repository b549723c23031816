"""Shapes and dtypes of every tensor, read off one onnxruntime run at the compiled input shapes.

The explainer graph runs in onnxruntime, so the shapes it is built on are the ones onnxruntime
computes: ONNX shape inference cannot always see through exporter-generated shape arithmetic,
and where it does determine a shape it can still differ from onnxruntime's (``ceil_mode`` pools
whose last window starts in the padding; see :mod:`onnx_lrp.ceil_pools`). ``tools/probe_cost.py``
measures what the run costs at cold start. The batch is 1: handlers never bake the batch size
into the graph.
"""
from __future__ import annotations

import numpy as np
import onnx

from .errors import InvalidInput
from .executor import CPU, make_session
from .screen import check_elements


def probe(model: onnx.ModelProto, feeds: dict[str, np.ndarray], label: str):
    """(shapes, dtypes) of every tensor the nodes produce, plus the inputs, for the inputs
    ``feeds`` (batch included), from an onnxruntime run; a tensor that shape inference already
    sizes beyond the limit is refused before the run allocates it."""
    screen_sizes(model, feeds, label)
    return _run(model, feeds, label)


def probe_for_rewrite(model: onnx.ModelProto, feeds: dict[str, np.ndarray], label: str):
    """As :func:`probe`, but from ONNX shape inference when it determines every tensor: for the
    shape-dependent rewrites (recurrent layers unrolled at the sequence length) of a model that
    onnxruntime may not run as it is (an LSTM with ``layout=1``). The compiler's shapes come from
    :func:`probe` on the rewritten model."""
    inferred = _infer(model, feeds, label)
    if inferred is not None:
        return inferred
    return _run(model, feeds, label)


def inferred_shapes(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, tuple]:
    """The shapes ONNX shape inference fully determines for the inputs ``feeds`` (possibly none)."""
    shapes = {}
    for name, vi in _partial_inference(_with_shapes(model, feeds)).items():
        info = _static(vi)
        if info is not None:
            shapes[name] = info[0]
    return shapes


def _given(feeds: dict[str, np.ndarray]):
    return ({name: tuple(np.shape(v)) for name, v in feeds.items()},
            {name: np.asarray(v).dtype for name, v in feeds.items()})


def _describe(feeds: dict[str, np.ndarray]) -> str:
    shapes = {name: tuple(np.shape(v)) for name, v in feeds.items()}
    return str(next(iter(shapes.values()))) if len(shapes) == 1 else str(shapes)


def screen_sizes(model: onnx.ModelProto, feeds: dict[str, np.ndarray], label: str) -> None:
    """Refuse, before onnxruntime allocates them, tensors that shape inference sizes beyond the
    limit at the input shapes of ``feeds``."""
    _check_sizes(_partial_inference(_with_shapes(model, feeds)), model, feeds, label)


def _with_shapes(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> onnx.ModelProto:
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    del fixed.graph.value_info[:]
    for vi in fixed.graph.input:
        if vi.name in feeds:
            vi.type.tensor_type.ClearField("shape")
            vi.type.tensor_type.shape.SetInParent()
            for d in np.shape(feeds[vi.name]):
                vi.type.tensor_type.shape.dim.add().dim_value = int(d)
    return fixed


def _infer(model: onnx.ModelProto, feeds: dict[str, np.ndarray], label: str):
    fixed = _with_shapes(model, feeds)
    try:
        inferred = onnx.shape_inference.infer_shapes(fixed, strict_mode=True, data_prop=True)
    except Exception:
        _check_sizes(_partial_inference(fixed), model, feeds, label)  # before a run allocates
        return None
    infos = {vi.name: vi for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
    _check_sizes(infos, model, feeds, label)
    shapes, dtypes = _given(feeds)
    for node in model.graph.node:
        for out in node.output:
            if not out:
                continue
            info = _static(infos.get(out))
            if info is None:
                return None
            shapes[out], dtypes[out] = info
    return shapes, dtypes


def _partial_inference(fixed: onnx.ModelProto) -> dict:
    """What non-strict shape inference determines (a run finds the rest)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(fixed, data_prop=True)
    except Exception:
        return {}
    return {vi.name: vi for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}


def _check_sizes(infos: dict, model: onnx.ModelProto, feeds: dict, label: str) -> None:
    """Refuse a tensor that inference sizes beyond the limit, naming it and its node, before
    onnxruntime tries to allocate it."""
    for node in model.graph.node:
        for out in node.output:
            info = _static(infos.get(out)) if out else None
            if info is not None:
                check_elements(info[0], f"tensor {out!r} (output of node {node.name!r}, {node.op_type}) at input "
                               f"shape {_describe(feeds)}", label)


def _static(vi):
    if vi is None or not vi.type.HasField("tensor_type"):
        return None
    tt = vi.type.tensor_type
    if not tt.HasField("shape") or not tt.elem_type:
        return None
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    if any(d is None or d < 0 for d in dims):
        return None
    return tuple(dims), onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray], label: str):
    probe_model = onnx.ModelProto()
    probe_model.CopyFrom(model)
    wanted = [t for n in probe_model.graph.node for t in n.output if t]
    known = {o.name for o in probe_model.graph.output}
    probe_model.graph.output.extend(onnx.ValueInfoProto(name=t) for t in wanted if t not in known)
    del probe_model.graph.value_info[:]
    try:
        session = make_session(probe_model, [CPU], optimize=False)
        names = [o.name for o in session.get_outputs()]
        values = session.run(names, {i.name: feeds[i.name] for i in probe_model.graph.input})
    except Exception as exc:
        raise InvalidInput(f"{label!r} cannot run on an input of shape {_describe(feeds)} "
                           f"({type(exc).__name__}: {exc}); check the input shape the model expects") from exc
    shapes, dtypes = _given(feeds)
    for name, value in zip(names, values):
        value = np.asarray(value)
        shapes[name], dtypes[name] = value.shape, value.dtype
    return shapes, dtypes
