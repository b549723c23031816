"""Precision variants of the shipped models against the float32 model: Pearson of the relevance,
conservation, and whether the explained output equals the variant's own forward pass.

    PYTHONPATH=$PWD .venv/bin/python tools/precision_agreement.py [--samples 4]

Variants: float16 and bfloat16 and float64 (every weight, input, output and cast converted),
float16 as onnxruntime's converter writes it (float32 inputs, Casts inserted), and QDQ
(``quantize_static``, per-tensor uint8 activations / int8 weights, calibrated on the samples).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.precision_models import VARIANTS, make_variant  # noqa: E402

import onnx_lrp  # noqa: E402

#: model -> its samples under models/samples (real pictures, preprocessed)
MODELS = {"efficientnet_lite0": ("cat_efficientnet_lite0.npy", "coffee_efficientnet_lite0.npy"),
          "cifar10_cnn": ("cat_cifar10.npy",)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--noisy", type=int, default=3, help="noisy copies of each sample (also calibration)")
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    print(f"{'model':20} {'variant':14} {'explained':9} {'pearson':>8} {'conservation':>13} {'same argmax':>11} "
          f"{'max |Δ output|':>14}\n(Δ output: against onnxruntime running the variant as written; nan: no CPU kernel for its type)")
    for name, samples in MODELS.items():
        base = onnx.load(root / "models" / f"{name}.onnx")
        explainer = onnx_lrp.Explainer(base)
        clean = np.concatenate([np.load(root / "models" / "samples" / s).astype(np.float32) for s in samples])
        clean = clean.reshape(-1, *explainer.input_shape[1:])
        rng = np.random.default_rng(0)
        noisy = [clean + rng.normal(0, 0.05 * clean.std(), clean.shape).astype(np.float32) for _ in range(args.noisy)]
        x = np.concatenate([clean, *noisy])
        ref = explainer.explain(x)
        print(f"{name:20} {'float32':14} {'yes':9} {1.0:8.4f} {np.mean(ref.conservation()):13.4f} {1.0:11.2f}")
        for variant in VARIANTS:
            try:
                model = make_variant(base, variant, x)
                e = onnx_lrp.Explainer(model).explain(x, target=ref.target)
            except onnx_lrp.errors.OnnxLrpError as exc:
                print(f"{name:20} {variant:14} {'no':9} {type(exc).__name__}: {str(exc)[:80]}")
                continue
            r = [np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(ref.relevance, e.relevance)]
            same = float(np.mean(e.output.argmax(1) == ref.output.argmax(1)))
            print(f"{name:20} {variant:14} {'yes':9} {np.mean(r):8.4f} {np.mean(e.conservation()):13.4f} "
                  f"{same:11.2f} {np.abs(e.output - _forward(model, x, e)).max():14.2e}")


def _forward(model: onnx.ModelProto, x: np.ndarray, e) -> np.ndarray:
    """The variant's own output on ``x`` from onnxruntime, unoptimised (logits when the explainer stripped a
    softmax: then compared after the softmax), in the explained output's shape."""
    import onnxruntime as ort

    vi = model.graph.input[0]
    dtype = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
    options = ort.SessionOptions()  # the model as written: no fusion of QDQ pairs into integer kernels
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(model.SerializeToString(), options)
    except Exception:  # noqa: BLE001 - e.g. no bfloat16 Conv kernel on this CPU
        return np.full_like(e.output, np.nan)
    out = session.run(None, {vi.name: x.astype(dtype)})[0].astype(np.float32).reshape(e.output.shape)
    if any("softmax" in note.lower() for note in e.notes):
        p = np.exp(e.output - e.output.max(1, keepdims=True))
        return out - (p / p.sum(1, keepdims=True)) + e.output  # Δ of the probabilities
    return out


if __name__ == "__main__":
    main()
