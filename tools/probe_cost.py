"""What reading shapes off an onnxruntime run costs at cold start, next to ONNX shape inference.

For the shipped models and the test fixtures: the probe run (session + one forward with every
tensor as an output), ONNX shape inference alone (what the probe used to rely on when it
determined every tensor), and the whole cold start (load, canonize, probe, compile, session,
first explain) — medians of ``--runs`` in this one process, side by side.

    PYTHONPATH=$PWD .venv/bin/python tools/probe_cost.py            # all models and fixtures
    PYTHONPATH=$PWD .venv/bin/python tools/probe_cost.py --runs 5 models/efficientnet_lite0.onnx
"""
from __future__ import annotations

import argparse
import glob
import statistics
import time
from pathlib import Path

import numpy as np

import onnx_lrp
from onnx_lrp.canonize import canonize
from onnx_lrp.explainer import _pick_output
from onnx_lrp.graph import data_input, declared_shape, load_detached
from onnx_lrp.probe import inferred_shapes, probe

ROOT = Path(__file__).resolve().parent.parent


def _median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(path: str, runs: int) -> dict:
    proto, label, _store = load_detached(path)
    vi = data_input(proto, label)
    shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in declared_shape(vi))
    model = canonize(proto, _pick_output(proto, label, None)).model
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    return {
        "nodes": len(model.graph.node),
        "infer": _median_time(lambda: inferred_shapes(model, {vi.name: x}), runs),
        "run": _median_time(lambda: probe(model, {vi.name: x}, label), runs),
        "cold": _median_time(lambda: onnx_lrp.Explainer(path, composite="epsilon").explain(x), runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    paths = args.paths or sorted(str(p.relative_to(ROOT)) for p in (ROOT / "models").glob("*.onnx")) + sorted(
        str(Path(p).relative_to(ROOT)) for p in glob.glob(str(ROOT / "tests/fixtures/*/*.onnx")))
    print(f"| model | nodes | shape inference s | probe run s | cold start s | probe run / cold start |")
    print("|---|---:|---:|---:|---:|---:|")
    for path in paths:
        r = measure(str(ROOT / path) if not Path(path).is_absolute() else path, args.runs)
        print(f"| {path} | {r['nodes']} | {r['infer']:.3f} | {r['run']:.3f} | {r['cold']:.3f} | "
              f"{r['run'] / r['cold']:.0%} |", flush=True)


if __name__ == "__main__":
    main()
