"""Memory over a long run: explain 10,000 inputs one at a time and sample the process's RSS.

    PYTHONPATH=$PWD .venv/bin/python tools/rss_curve.py [--inputs 10000] [--every 500]
        [--variants fixed images tokens] [--cache-size 8] [--compare-unbounded] [--jobs 1]

Variants (each runs in a fresh process, so that the RSS is its own):

- ``fixed``: models/cifar10_cnn.onnx, the shipped cat picture plus noise, one shape;
- ``images``: models/text_direction.onnx (fully convolutional, H and W symbolic), pictures of
  four common sizes, and every ``--new-every`` inputs one size never seen before;
- ``tokens``: a token-id transformer (embedding, position table sliced to the length, one
  attention block, mean pool, classifier; random weights, built here with onnx.helper: no
  shipped or fixture transformer takes sequences of any length), sequences of four common
  lengths, and every ``--new-every`` inputs a length never seen before. attnlrp composite.

A table per variant: inputs done -> RSS MB (from /proc/self/status VmRSS), input shapes cached,
weights held by the store (MB), then the slope of RSS after the warm-up in KB per 1000 inputs
(least squares). ``--compare-unbounded`` runs the shape variants a second time with
``cache_size=None`` (every shape kept: how onnx-lrp behaved before the cache was bounded) and
prints the two side by side. ``--jobs`` runs that many of these processes at once (each
measures its own RSS; the seconds column is then not a timing).
"""
from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
#: common picture sizes (H, W) of the images variant; new ones walk a grid beside them
COMMON_SIZES = [(48, 96), (48, 64), (32, 96), (32, 64)]
COMMON_LENGTHS = [16, 32, 48, 64]


def rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def token_transformer(vocab: int = 1000, hidden: int = 64, max_len: int = 512, classes: int = 4) -> onnx.ModelProto:
    """ids (N, T) int64 -> embedding + position[:T] -> LayerNorm -> one attention head with a
    residual -> ReLU MLP with a residual -> mean over T -> classifier (N, classes)."""
    rng = np.random.default_rng(0)

    def w(*shape, scale=None):
        return rng.normal(0, scale or shape[0] ** -0.5, shape).astype(np.float32)

    inits = {"table": w(vocab, hidden, scale=1.0), "pos": w(max_len, hidden, scale=0.1),
             "gamma": np.ones(hidden, np.float32), "beta": np.zeros(hidden, np.float32),
             "wq": w(hidden, hidden), "wk": w(hidden, hidden), "wv": w(hidden, hidden),
             "scale": np.array(hidden ** -0.5, np.float32), "w1": w(hidden, 4 * hidden), "w2": w(4 * hidden, hidden),
             "head": w(hidden, classes), "zero": np.array([0]), "one": np.array([1]), "two": np.array([2]), "time_axis": np.array([1])}
    n = helper.make_node
    nodes = [n("Gather", ["table", "ids"], ["emb"], axis=0, name="embed"),
             n("Shape", ["ids"], ["ids_shape"], name="shape"),
             n("Slice", ["ids_shape", "one", "two"], ["length"], name="length"),  # (1,): T
             n("Slice", ["pos", "zero", "length", "zero"], ["pos_t"], name="pos_slice"),
             n("Add", ["emb", "pos_t"], ["h0"], name="add_pos"),
             n("LayerNormalization", ["h0", "gamma", "beta"], ["h1"], axis=-1, name="ln"),
             n("MatMul", ["h1", "wq"], ["q"], name="q"), n("MatMul", ["h1", "wk"], ["k"], name="k"),
             n("MatMul", ["h1", "wv"], ["v"], name="v"),
             n("Transpose", ["k"], ["kt"], perm=[0, 2, 1], name="kt"),
             n("MatMul", ["q", "kt"], ["scores_raw"], name="qk"), n("Mul", ["scores_raw", "scale"], ["scores"], name="sc"),
             n("Softmax", ["scores"], ["attn"], axis=-1, name="softmax"),
             n("MatMul", ["attn", "v"], ["ctx"], name="av"), n("Add", ["h1", "ctx"], ["h2"], name="res1"),
             n("MatMul", ["h2", "w1"], ["f1"], name="ff1"), n("Relu", ["f1"], ["f1r"], name="relu"),
             n("MatMul", ["f1r", "w2"], ["f2"], name="ff2"), n("Add", ["h2", "f2"], ["h3"], name="res2"),
             n("ReduceMean", ["h3", "time_axis"], ["pooled"], keepdims=0, name="pool"),
             n("MatMul", ["pooled", "head"], ["logits"], name="classifier")]
    graph = helper.make_graph(nodes, "token_transformer",
                              [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", "T"])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def schedule(common: list, fresh, count: int, new_every: int):
    """The shape of input i: the common ones in turn, and every ``new_every``-th a fresh one."""
    for i in range(count):
        yield next(fresh) if new_every and i % new_every == new_every - 1 else common[i % len(common)]


def fresh_sizes():
    taken = set(COMMON_SIZES)
    for w in range(32, 100_000, 8):
        for h in (24, 32, 40, 48):
            if (h, w) not in taken:
                yield (h, w)


def fresh_lengths():
    for length in range(8, 100_000):
        if length not in COMMON_LENGTHS:
            yield length


def worker(variant: str, inputs: int, every: int, cache_size, new_every: int) -> None:
    """Runs in its own process; prints one JSON line per sample."""
    sys.path.insert(0, str(ROOT))
    import onnx_lrp

    rng = np.random.default_rng(0)
    if variant == "fixed":
        explainer = onnx_lrp.Explainer(ROOT / "models/cifar10_cnn.onnx", cache_size=cache_size)
        cat = np.load(ROOT / "models/samples/cat_cifar10.npy").astype(np.float32).reshape(1, 3, 32, 32)
        shapes = ((1, 3, 32, 32) for _ in range(inputs))
        make = lambda shape: cat + rng.normal(0, 0.05, shape).astype(np.float32)  # noqa: E731
    elif variant == "images":
        explainer = onnx_lrp.Explainer(ROOT / "models/text_direction.onnx", cache_size=cache_size)
        shapes = ((1, 3, h, w) for h, w in schedule(COMMON_SIZES, fresh_sizes(), inputs, new_every))
        make = lambda shape: rng.uniform(-1, 1, shape).astype(np.float32)  # noqa: E731
    elif variant == "tokens":
        explainer = onnx_lrp.Explainer(token_transformer(), composite="attnlrp", cache_size=cache_size)
        shapes = ((1, t) for t in schedule(COMMON_LENGTHS, fresh_lengths(), inputs, new_every))
        make = lambda shape: rng.integers(0, 1000, shape)  # noqa: E731
    else:
        raise SystemExit(f"unknown variant {variant!r}")
    store = explainer._weights
    start = time.perf_counter()
    print(json.dumps({"done": 0, "rss": rss_mb(), "cached": 0, "weights": store.used_bytes() / 2**20, "s": 0.0}),
          flush=True)
    for i, shape in enumerate(shapes, 1):
        explainer.explain(make(shape))
        if i % every == 0:
            print(json.dumps({"done": i, "rss": rss_mb(), "cached": len(explainer.sessions),
                              "weights": store.used_bytes() / 2**20, "s": time.perf_counter() - start}), flush=True)


def run_worker(variant, args, cache_size) -> list[dict]:
    cmd = [sys.executable, __file__, "--worker", variant, "--inputs", str(args.inputs), "--every", str(args.every),
           "--new-every", str(args.new_every), "--cache-size", "none" if cache_size is None else str(cache_size)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{variant} (cache_size={cache_size}) failed:\n{out.stderr[-3000:]}")
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def slope_kb_per_1000(rows: list[dict], warmup: int) -> float:
    """Least-squares slope of RSS against inputs done, over the samples after ``warmup`` inputs."""
    kept = [r for r in rows if r["done"] >= warmup]
    if len(kept) < 2:
        return float("nan")
    x = np.array([r["done"] for r in kept], float)
    y = np.array([r["rss"] for r in kept], float) * 1024
    return float(np.polyfit(x, y, 1)[0] * 1000)


def report(variant: str, runs: dict, warmup: int) -> None:
    labels = list(runs)
    print(f"\n### {variant}\n")
    head = " | ".join(f"RSS MB ({label}) | shapes cached | store MB" for label in labels)
    print(f"| inputs | {head} |")
    print("|---:|" + "---:|---:|---:|" * len(labels))
    for rows in zip(*runs.values()):
        cells = " | ".join(f"{r['rss']:.0f} | {r['cached']} | {r['weights']:.1f}" for r in rows)
        print(f"| {rows[0]['done']} | {cells} |")
    for label, rows in runs.items():
        print(f"\n{label}: slope after {warmup} inputs {slope_kb_per_1000(rows, warmup):+.0f} KB per 1000 inputs; "
              f"{rows[-1]['s']:.0f} s for {rows[-1]['done']} inputs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=500, help="sample RSS every this many inputs")
    parser.add_argument("--warmup", type=int, default=2000, help="inputs before the slope is fitted")
    parser.add_argument("--new-every", type=int, default=100, help="one never-seen shape every this many inputs")
    parser.add_argument("--variants", nargs="+", default=["fixed", "images", "tokens"])
    parser.add_argument("--cache-size", default="8", help="shapes kept compiled; 'none' keeps every shape")
    parser.add_argument("--compare-unbounded", action="store_true",
                        help="also run the shape variants with cache_size=None, side by side")
    parser.add_argument("--jobs", type=int, default=1, help="measuring processes run at once")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    cache_size = None if args.cache_size.lower() == "none" else int(args.cache_size)
    if args.worker:
        worker(args.worker, args.inputs, args.every, cache_size, args.new_every)
        return
    print(f"{args.inputs} inputs, one per explain call; a new shape every {args.new_every} inputs "
          "(images, tokens)", flush=True)
    plan = [(variant, f"cache_size={cache_size}", cache_size) for variant in args.variants]
    if args.compare_unbounded:
        plan += [(variant, "unbounded", None) for variant in args.variants if variant != "fixed"]
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        rows = list(pool.map(lambda job: run_worker(job[0], args, job[2]), plan))
    for variant in args.variants:
        report(variant, {label: r for (v, label, _), r in zip(plan, rows) if v == variant}, args.warmup)


if __name__ == "__main__":
    main()
