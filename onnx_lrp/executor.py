"""onnxruntime sessions: provider choice and session options."""
from __future__ import annotations

import onnx
import onnxruntime as ort

from .errors import OnnxLrpError
from .weights import external_arrays

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
    return opts


def make_session(model: onnx.ModelProto, providers: list[str], optimize: bool = True,
                 threads: int | None = None) -> ort.InferenceSession:
    """A session; in-memory weights (see :mod:`onnx_lrp.weights`) are handed over without copies
    through the protobuf."""
    opts = session_options(optimize, threads)
    names, arrays = external_arrays(model)
    if names:
        opts.add_external_initializers(names, [ort.OrtValue.ortvalue_from_numpy(a) for a in arrays])
    try:
        return ort.InferenceSession(model.SerializeToString(), sess_options=opts, providers=providers,
                                    provider_options=[PROVIDER_OPTIONS.get(p, {}) for p in providers])
    except Exception as exc:  # onnxruntime raises its own types, not OnnxLrpError
        raise _session_error(model, providers, exc) from exc


def _session_error(model: onnx.ModelProto, providers: list[str], exc: Exception) -> OnnxLrpError:
    return OnnxLrpError(f"onnxruntime cannot load graph {model.graph.name!r} (providers {providers!r}): "
                        f"{type(exc).__name__}: {exc}")
