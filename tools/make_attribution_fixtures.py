#!/usr/bin/env python
"""Build the reference fixtures for onnx_lrp.attribution (gradient baselines and occlusion).

Run with an environment that has torch, torchvision and zennit (the ``dev`` extra)::

    python tools/make_attribution_fixtures.py            # writes tests/fixtures/attribution/
    python tools/make_attribution_fixtures.py --out DIR  # writes elsewhere, e.g. to diff a rebuild

The networks are the small torchvision VGG-BN and BasicBlock ResNet of the Zennit LRP fixtures
(``tools/make_zennit_fixtures.py`` builds them from seeds; the script checks that the rebuilt torch
model reproduces the committed ``tests/fixtures/zennit/<model>.onnx`` before using it). Inputs and
targets are those of ``<model>__epsilon_plus_flat.npz``. For each model it stores

- ``gradient``: Zennit's ``Gradient`` attributor with ``attr_output = one_hot(target)``;
- ``integrated_gradients``: Zennit's ``IntegratedGradients`` (``n_iter`` = ``ig_steps``, zero
  baseline) with the same output;
- ``integrated_gradients_shifted``: the same with the baseline ``ig_baseline`` (a number);
- ``smoothgrad``: reference math in torch, the mean gradient over ``sg_samples`` copies with
  Gaussian noise of std ``sg_noise``·(max − min) per sample, the last copy noise-free (Zennit's
  convention). The noise is drawn with numpy exactly as ``onnx_lrp.attribution.smoothgrad`` does
  (``default_rng(sg_seed).standard_normal((N, samples − 1) + sample_shape, float32)``), so the two
  compute on the same noisy inputs: Zennit's ``SmoothGrad`` draws from torch's generator instead;
- ``occlusion``: reference math in torch for the Captum-style occlusion of onnx_lrp (window
  ``occ_window``, stride ``occ_stride`` over H and W, all channels, zero fill, the drop of the
  target logit averaged over the windows covering each pixel). Zennit's ``Occlusion`` keeps the
  window and occludes the rest, a different quantity.

All in float32, like onnxruntime; the script also prints float32-vs-float64 differences (the float
noise a test must tolerate).
"""
import argparse
import pathlib
import sys

import numpy as np
import torch
from torch import nn
from zennit.attribution import Gradient, IntegratedGradients

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import make_zennit_fixtures as zf  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
ZENNIT_FIXTURES = ROOT / "tests" / "fixtures" / "zennit"
OUT = ROOT / "tests" / "fixtures" / "attribution"

MODELS = {name: zf.SMALL_MODELS[name][0] for name in ("vgg_bn_small", "resnet18_small")}
SETTINGS = dict(ig_steps=16, ig_baseline=-0.5, sg_samples=6, sg_noise=0.15, sg_seed=7, occ_window=8, occ_stride=4)


def one_hot(target):
    def attr_output(output):
        return nn.functional.one_hot(target, num_classes=output.shape[1]).to(output.dtype)
    return attr_output


def gradient(model, x, target):
    with Gradient(model=model, attr_output=one_hot(target)) as attributor:
        _, grad = attributor(x.clone())
    return grad.detach()


def integrated_gradients(model, x, target, steps, baseline):
    fn = (lambda t: torch.full_like(t, baseline))
    with IntegratedGradients(model=model, attr_output=one_hot(target), n_iter=steps, baseline_fn=fn) as attributor:
        _, result = attributor(x.clone())
    return result.detach()


def smoothgrad(model, x, target, samples, noise, seed):
    rng = np.random.default_rng(seed)
    eps = torch.from_numpy(rng.standard_normal((len(x), samples - 1) + tuple(x.shape[1:]), dtype=np.float32))
    dims = tuple(range(1, x.ndim))
    std = noise * (x.amax(dims, keepdim=True) - x.amin(dims, keepdim=True))
    total = torch.zeros_like(x)
    for k in range(samples):
        shifted = x if k == samples - 1 else x + eps[:, k].to(x.dtype) * std
        total += gradient(model, shifted, target)
    return total / samples


def occlusion(model, x, target, window, stride):
    size = x.shape[-1]
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    with torch.no_grad():
        reference = model(x)[torch.arange(len(x)), target]
        total = torch.zeros_like(x)
        count = torch.zeros_like(x[0])
        for top in starts:
            for left in starts:
                occluded = x.clone()
                occluded[:, :, top:top + window, left:left + window] = 0
                drop = reference - model(occluded)[torch.arange(len(x)), target]
                total[:, :, top:top + window, left:left + window] += drop.view(-1, 1, 1, 1)
                count[:, top:top + window, left:left + window] += 1
    return total / count


def compute(model, x, target, s):
    return {
        "gradient": gradient(model, x, target),
        "integrated_gradients": integrated_gradients(model, x, target, s["ig_steps"], 0.0),
        "integrated_gradients_shifted": integrated_gradients(model, x, target, s["ig_steps"], s["ig_baseline"]),
        "smoothgrad": smoothgrad(model, x, target, s["sg_samples"], s["sg_noise"], s["sg_seed"]),
        "occlusion": occlusion(model, x, target, s["occ_window"], s["occ_stride"]),
    }


def check_onnx_matches(name, model, x):
    onnx_path = ZENNIT_FIXTURES / f"{name}.onnx"
    with torch.no_grad():
        logits = model(x).numpy()
    error = np.abs(zf.onnxruntime_logits(onnx_path, x) - logits).max()
    if error > 1e-4:
        sys.exit(f"the rebuilt {name} does not reproduce {onnx_path} (max |d logits| {error:.2e}); "
                 "rebuild the Zennit fixtures first")
    return error


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=pathlib.Path, default=OUT)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}, zennit {zf.zennit_version()}")
    for name, build in MODELS.items():
        model = build().eval()
        with np.load(ZENNIT_FIXTURES / f"{name}__epsilon_plus_flat.npz") as data:
            x_np, target_np = data["x"], data["target"]
        x, target = torch.from_numpy(x_np), torch.from_numpy(target_np)
        error = check_onnx_matches(name, model, x)
        results = compute(model, x, target, SETTINGS)
        results64 = compute(model.double(), x.double(), target, SETTINGS)
        model.float()
        arrays = {"x": x_np, "target": target_np}
        arrays.update({k: v.numpy().astype(np.float32) for k, v in results.items()})
        arrays.update({k: np.asarray(v) for k, v in SETTINGS.items()})
        np.savez_compressed(args.out / f"{name}.npz", **arrays)
        print(f"{name}: onnx vs torch logits {error:.1e}; targets {target_np.tolist()}")
        for key, value in results.items():
            ref = results64[key].numpy()
            rel = np.abs(value.numpy() - ref).max() / np.abs(ref).max()
            print(f"  {key:30s} max|R| {np.abs(ref).max():.3e}  float32 vs float64 max|d|/max|R| {rel:.1e}")
    for path in sorted(args.out.iterdir()):
        print(f"{path.name:30s} {path.stat().st_size / 1024:7.1f} KiB")


if __name__ == "__main__":
    main()
