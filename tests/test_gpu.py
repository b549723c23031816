"""onnx-lrp on onnxruntime's CUDAExecutionProvider gives what the CPU gives.

Marked ``gpu``: they run where onnxruntime-gpu offers CUDA (``tools/gpu_check.sh`` runs them
with ``pytest -m gpu``) and are skipped elsewhere, with the reason shown.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import onnx_lrp

MODELS = Path(__file__).resolve().parents[1] / "models"
CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(
    CUDA not in ort.get_available_providers(),
    reason=f"onnxruntime {ort.__version__} offers no {CUDA} (install onnxruntime-gpu on a machine with a GPU)")]


def _explain(model: str, x: np.ndarray, composite: str, providers: list[str]):
    return onnx_lrp.Explainer(str(MODELS / model), composite=composite, providers=providers).explain(x)


@pytest.mark.parametrize("composite", ["epsilon", "epsilon_plus_flat", "epsilon_alpha2_beta1_flat"])
def test_efficientnet_on_cuda_matches_cpu(composite):
    x = np.concatenate([np.load(MODELS / "samples" / f"{name}_efficientnet_lite0.npy") for name in ("cat", "coffee")])
    gpu = _explain("efficientnet_lite0.onnx", x, composite, [CUDA, CPU])
    cpu = _explain("efficientnet_lite0.onnx", x, composite, [CPU])
    np.testing.assert_array_equal(gpu.target, cpu.target)
    np.testing.assert_allclose(gpu.output, cpu.output, rtol=1e-3, atol=1e-3)
    for g, c in zip(gpu.relevance, cpu.relevance):
        assert np.corrcoef(g.ravel(), c.ravel())[0, 1] > 0.9999
        assert np.abs(g - c).max() <= 1e-3 * np.abs(c).max()


def test_session_runs_on_cuda():
    """CUDA is offered *and* loads (its libraries found), else onnxruntime falls back to the CPU."""
    session = ort.InferenceSession(str(MODELS / "cifar10_cnn.onnx"), providers=[CUDA, CPU])
    assert session.get_providers()[0] == CUDA


def test_batches_on_cuda_match_single_samples():
    # epsilon_plus_flat: LRP-ε with ε = 1e-6 amplifies any change of float32 summation order where
    # z ≈ 0 (and cuDNN picks its algorithm per batch size), so batch and single would differ there
    # for a reason that has nothing to do with batching
    x = np.random.default_rng(0).uniform(0, 255, (16, 3, 32, 32)).astype(np.float32)
    explainer = onnx_lrp.Explainer(str(MODELS / "cifar10_cnn.onnx"), composite="epsilon_plus_flat",
                                   providers=[CUDA, CPU])
    batched = explainer.explain(x)
    single = np.concatenate([explainer.explain(x[i:i + 1]).relevance for i in range(len(x))])
    np.testing.assert_allclose(batched.relevance, single, rtol=1e-4, atol=1e-6 * np.abs(single).max())
