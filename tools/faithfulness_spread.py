"""Faithfulness correlation: its spread over seeds for several subset counts, beside the
differences between methods it is meant to show; the numbers behind the default subset count.

The drop of the target output when a subset is removed does not depend on the explanation, so
one large pool of random subsets is measured per sample (``--pool``, one forward pass each) and
every (method, subset count, seed) draws its subsets from that pool with replacement (the
bootstrap principle: the pool stands in for the distribution of subsets). For each subset count
it prints, per method, the mean over seeds ± the standard deviation over seeds of the value
``evaluate`` reports (the mean over the samples of one seed), the bootstrap estimate of that
standard deviation from a single seed (what ``evaluate`` prints as ±) and, per sample, mean ± std.

    PYTHONPATH=$PWD python tools/faithfulness_spread.py models/efficientnet_lite0.onnx \\
        models/samples/cat_efficientnet_lite0.npy models/samples/coffee_efficientnet_lite0.npy
    PYTHONPATH=$PWD python tools/faithfulness_spread.py models/cifar10_cnn.onnx models/samples/cat_cifar10.npy

Needs only the runtime dependencies.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from onnx_lrp import Explainer
from onnx_lrp.attribution import attribute, attributor
from onnx_lrp.evaluation import MethodSpec, Settings
from onnx_lrp.evaluation import metrics as M
from onnx_lrp.evaluation.dataset import iter_items

METHODS = ("lrp", "gradient", "occlusion", "random", "saliency", "integrated_gradients")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("inputs", nargs="+")
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--runs", nargs="+", type=int, default=[32, 64, 128, 256, 512])
    p.add_argument("--seeds", type=int, default=12)
    p.add_argument("--pool", type=int, default=4096, help="subsets measured per sample")
    p.add_argument("--composite", default="epsilon_plus_flat")
    args = p.parse_args()

    settings = Settings()
    explainer = Explainer(args.model, composite=args.composite)
    a = attributor(explainer)
    items, _ = iter_items(explainer, args.inputs)
    items = list(items)
    x = np.concatenate([it.x for it in items]).astype(np.float32)
    patch = settings.patch_for(M._spatial_shape(x.shape, M.AUTO))
    target = a.targets(x, None, settings.ort_batch)
    start = time.perf_counter()
    pool = M.subset_drops(a, x, target, patch=patch, subset=settings.faithfulness_subset, runs=args.pool,
                          baseline=settings.baseline, batch_size=settings.ort_batch, seed=settings.seed)
    seconds = time.perf_counter() - start
    print(f"{args.model}: {len(x)} samples ({', '.join(it.name for it in items)}), patch {patch}, "
          f"{pool.inside.shape[2]} patches, subsets of {settings.faithfulness_subset:g}; pool of {args.pool} subsets "
          f"per sample in {seconds:.0f} s ({seconds / (args.pool * len(x)) * 1e3:.1f} ms per forward pass)")

    relevance = {}
    for name in args.methods:
        spec = MethodSpec.parse(name)
        relevance[spec.label] = attribute(a, x, target, spec.name, settings.ort_batch,
                                          **spec.resolved(settings, patch))

    rng = np.random.default_rng(12345)
    header = f"{'runs':>5} {'method':<22}{'mean ± std over seeds':>24}{'bootstrap std':>15}   per sample"
    print(header)
    print("-" * len(header))
    summary = {}
    for runs in args.runs:
        draws = [M.SubsetDrops(pool.labels, np.take_along_axis(pool.inside, pick[:, :, None], axis=1),
                               np.take_along_axis(pool.drops, pick, axis=1))
                 for pick in rng.integers(0, args.pool, (args.seeds, len(x), runs))]
        for label, r in relevance.items():
            per_seed = np.array([M.faithfulness_correlation(None, x, r, drops=d) for d in draws])  # (seeds, N)
            reported = np.nanmean(per_seed, axis=1)
            boot = []
            for d in draws[:3]:
                s = M.faithfulness_spread(r, d)
                boot.append(np.sqrt(np.nansum(s ** 2)) / np.isfinite(s).sum())
            per_sample = "  ".join(f"{m:+.3f} ± {s:.3f}" for m, s in zip(np.nanmean(per_seed, 0),
                                                                        np.nanstd(per_seed, 0, ddof=1)))
            summary[runs, label] = (reported.mean(), reported.std(ddof=1))
            print(f"{runs:>5} {label:<22}{reported.mean():>+12.3f} ± {reported.std(ddof=1):.3f}"
                  f"{np.mean(boot):>15.3f}   {per_sample}")
    print()
    print("spread (std over seeds of the reported mean) against the gaps between methods' means:")
    for runs in args.runs:
        means = sorted(summary[runs, label][0] for label in relevance)
        gaps = np.diff(means)
        spread = max(summary[runs, label][1] for label in relevance)
        print(f"  runs {runs:>4}: largest spread {spread:.3f}; gaps between neighbouring methods: "
              f"{', '.join(f'{g:.3f}' for g in gaps)} (median {np.median(gaps):.3f}); "
              f"{runs * len(x)} forward passes per evaluation")


if __name__ == "__main__":
    main()
