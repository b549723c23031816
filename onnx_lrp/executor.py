"""onnxruntime sessions: provider choice and session options."""
from __future__ import annotations

import os
import uuid
from contextlib import contextmanager

import numpy as np
import onnx
import onnxruntime as ort

from .errors import OnnxLrpError
from .weights import external_arrays, file_backed, stores_of

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
#: Full float32 on the GPU: onnxruntime's CUDA provider rounds Conv/MatMul inputs to TF32 (10-bit
#: mantissa) by default on Ampere and newer, which moves logits by ~1e-3 and LRP's ratios z⁻¹ by
#: far more near z = 0 (measured on an H100: 30 % of EfficientNet-Lite0's logits off by > 1e-3).
PROVIDER_OPTIONS = {CUDA: {"use_tf32": "0"}}


def resolve_providers(requested=None) -> list[str]:
    """CUDA first when onnxruntime offers it, then CPU; or the user's list, checked."""
    available = ort.get_available_providers()
    if requested is None:
        return [p for p in (CUDA, CPU) if p in available]
    requested = [requested] if isinstance(requested, str) else list(requested)
    missing = [p for p in requested if p not in available]
    if missing:
        raise OnnxLrpError(f"execution providers {missing!r} are not available in this onnxruntime; "
                           f"available: {available!r} (install onnxruntime-gpu for CUDA)")
    return requested


#: session config entries added to every session made while :func:`extra_session_config` is entered
_EXTRA_CONFIG: dict[str, str] = {}
#: intra-op threads wait for work without spinning: their spin-waiting takes the cores other threads
#: of the process (the command line's writers) or other processes need (2 cores loaded by other work,
#: EfficientNet-Lite0: explain in memory 2.0-3.7 images/s without spinning against 1.4-2.4 with it)
NO_SPINNING = {"session.intra_op.allow_spinning": "0"}


@contextmanager
def extra_session_config(entries: dict[str, str]):
    """Sessions made inside the ``with`` block get these onnxruntime session config entries too."""
    previous = dict(_EXTRA_CONFIG)
    _EXTRA_CONFIG.update(entries)
    try:
        yield
    finally:
        _EXTRA_CONFIG.clear()
        _EXTRA_CONFIG.update(previous)


def session_options(optimize: bool = True, threads: int | None = None) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                     else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    if threads:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    # Pre-packed weight copies cost as much memory as the weights (twice for a dense layer used
    # by the forward and, transposed, by its VJP) and measured no faster on VGG-16/ResNet-50.
    opts.add_session_config_entry("session.disable_prepacking", "1")
    # The memory pattern allocates one block for a whole planned run beside the arena's chunks
    # after the first run; the explainer keeps every activation for its backward sweep, so that
    # block is large: without it ResNet-50 at batch 8 peaks at 1.57 GB instead of 2.65 GB, as fast.
    opts.enable_mem_pattern = False
    for key, value in _EXTRA_CONFIG.items():
        opts.add_session_config_entry(key, value)
    return opts


#: onnxruntime graph fusions that delete a tensor the relevance sweep still reads: FastGeluFusion
#: (level 2, onnxruntime 1.32) fuses the tanh GELU ``0.5·x·(1 + tanh(…))`` into FastGelu without
#: checking that ``0.5·x`` has other readers, and the session then fails to load (GPT-2's MLP).
DISABLED_OPTIMIZERS = ["FastGeluFusion"]


def make_session(model: onnx.ModelProto, providers: list[str], optimize: bool = True,
                 threads: int | None = None) -> ort.InferenceSession:
    """A session; the detached weights (see :mod:`onnx_lrp.weights`) are memory-mapped from their
    store's scratch file, so that onnxruntime and the store share one copy."""
    opts = session_options(optimize, threads)
    if any(node.op_type == "QuantizeLinear" for node in model.graph.node):
        # QDQ fusions into integer kernels, and the NCHWc layout's summation order, round differently,
        # and a rounding difference moves an activation by a whole quantization step: keep the fake
        # quantization as written so that the explained output is the model's
        opts.add_session_config_entry("session.disable_quant_qdq", "1")
        if optimize:
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    path = _file_backed_model(model)
    if path is None:
        _hand_over_in_memory(model, opts)
    try:
        return ort.InferenceSession(path or model.SerializeToString(), sess_options=opts, providers=providers,
                                    provider_options=[PROVIDER_OPTIONS.get(p, {}) for p in providers],
                                    disabled_optimizers=DISABLED_OPTIMIZERS)
    except Exception as exc:  # onnxruntime raises its own types, not OnnxLrpError
        raise _session_error(model, providers, exc) from exc
    finally:
        if path is not None:  # the weights stay mapped; the graph file is read
            os.unlink(path)


def _file_backed_model(model: onnx.ModelProto) -> str | None:
    """The model saved beside its store's scratch file (weights as external data), or None when
    it has no detached weights or the file cannot be written (then the weights go in memory)."""
    stores = stores_of(model)
    if len(stores) != 1:
        return None
    try:
        folder = stores[0].spill().parent
        path = folder / f"{uuid.uuid4().hex}.onnx"
        path.write_bytes(file_backed(model).SerializeToString())
    except OSError:
        return None
    return str(path)


def _hand_over_in_memory(model: onnx.ModelProto, opts: ort.SessionOptions) -> None:
    """Weights as OrtValues over the arrays (onnxruntime copies them: they are then held twice)."""
    names, arrays = external_arrays(model)
    if names:
        opts.add_external_initializers(names, [ort.OrtValue.ortvalue_from_numpy(a) for a in arrays])


def _session_error(model: onnx.ModelProto, providers: list[str], exc: Exception) -> OnnxLrpError:
    return OnnxLrpError(f"onnxruntime cannot load graph {model.graph.name!r} (providers {providers!r}): "
                        f"{type(exc).__name__}: {exc}")


def run_batched(session, names: list[str], inputs: dict[str, np.ndarray], batch_axes: dict[str, int | None],
                n: int, step: int | None = None, fixed: int | None = None, label: str = "model") -> list[np.ndarray]:
    """Run ``session`` on ``n`` samples in chunks of ``step`` and concatenate the outputs along
    axis 0 (the batch of every output the compiled graphs return).

    ``batch_axes`` gives each input's batch axis (None: the input has none and is given whole to
    every chunk). A model with a baked-in batch size ``fixed`` gets its last, short chunk padded
    (by repeating the last sample along each input's batch axis) and the outputs trimmed back.
    onnxruntime's failures become :class:`OnnxLrpError` naming the inputs' shapes.
    """
    step = fixed or step or n
    parts = []
    for start in range(0, n, step):
        count = min(step, n - start)
        chunk = {name: _take(value, batch_axes.get(name), start, count, fixed) for name, value in inputs.items()}
        try:
            values = session.run(names, chunk)
        except Exception as exc:  # onnxruntime raises its own types, not OnnxLrpError
            shapes = {k: tuple(v.shape) for k, v in chunk.items()}
            raise OnnxLrpError(f"onnxruntime failed running {label!r} on inputs of shapes {shapes} "
                               f"({type(exc).__name__}: {exc})") from exc
        parts.append([np.asarray(v)[:count] for v in values])
    if len(parts) == 1:
        return parts[0]
    return [np.concatenate([p[i] for p in parts]) for i in range(len(names))]


def _take(value: np.ndarray, axis: int | None, start: int, count: int, fixed: int | None) -> np.ndarray:
    if axis is None:
        return value
    index = [slice(None)] * value.ndim
    index[axis] = slice(start, start + count)
    part = value[tuple(index)]
    if fixed and count < fixed:
        last = np.take(part, [count - 1], axis=axis)
        part = np.concatenate([part, np.repeat(last, fixed - count, axis=axis)], axis=axis)
    return np.ascontiguousarray(part)
