"""Explain time of several onnx-lrp checkouts (or settings) on one model, interleaved.

On a shared, loaded machine absolute times drift by a factor of two within minutes; a ratio
between two versions measured one after the other is then meaningless. Here every variant runs in
its own long-lived process, the processes take turns (A B C A B C ...), one explain each, and the
table gives each variant's median and its ratio to the first. The load average is printed with it.

    python tools/bench_interleaved.py --variant before=/path/to/main --variant after=. \\
        --models vgg16 resnet50 --composites epsilon_plus_flat epsilon_gamma_box --batches 1 8 --rounds 7
    python tools/bench_interleaved.py --cpu-time ...     # one thread each, CPU time: for a busy machine

A variant is ``LABEL=ROOT`` (a checkout whose ``onnx_lrp`` is imported) optionally followed by
``:NAME=VALUE,...`` environment settings. The models are bench.py's (torchvision, seeded weights);
``--workdir`` keeps the exports between runs. Needs torch and torchvision to export them.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (models, inputs, Box bounds)


def worker(spec: dict) -> None:
    """Build the explainer, warm up, then time one explain per line read from stdin."""
    import numpy as np
    import onnx_lrp
    if spec.get("one_thread"):
        one_thread()
    x = np.load(spec["x_path"]) if spec.get("x_path") else bench.inputs(spec["batch"])
    kwargs = {"composite": spec["composite"], **bench.explainer_kwargs(spec["name"], spec["onnx_path"])}
    if spec["composite"] == "epsilon_gamma_box":
        kwargs.update(low=bench.LOW, high=bench.HIGH)
    target = np.zeros(len(x), np.int64) if spec["name"] == "minilm" else None
    explainer = onnx_lrp.Explainer(spec["onnx_path"], providers=["CPUExecutionProvider"], **kwargs)
    relevance = explainer.explain(x, target=target).relevance
    np_path = spec.get("out")
    if np_path:
        import numpy as np
        np.save(np_path, relevance)
    print("ready", flush=True)
    for _ in sys.stdin:
        start, cpu = time.perf_counter(), time.process_time()
        explainer.explain(x, target=target)
        print(json.dumps({"t": time.perf_counter() - start, "cpu": time.process_time() - cpu,
                          "rss": bench.peak_rss_mb()}), flush=True)


def one_thread() -> None:
    """Sessions with one intra-op thread that does not spin: the process's CPU time is then the
    work itself, which a loaded machine inflates far less than the wall-clock time."""
    from onnx_lrp import executor
    plain = executor.session_options

    def options(optimize=True, threads=None):
        opts = plain(optimize, 1)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return opts
    executor.session_options = options


def parse_variant(text: str) -> tuple[str, Path, dict]:
    label, rest = text.split("=", 1)
    root, _, settings = rest.partition(":")
    env = dict(item.split("=", 1) for item in settings.split(",") if item)
    return label, Path(root).resolve(), env


def start(label, root, env, spec) -> subprocess.Popen:
    full_env = dict(os.environ, **env)
    full_env["PYTHONPATH"] = os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])
    proc = subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)], env=full_env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return proc


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", action="append", required=False, default=[])
    parser.add_argument("--models", nargs="+", default=["vgg16", "resnet50"])
    parser.add_argument("--composites", nargs="+", default=["epsilon_plus_flat", "epsilon_gamma_box"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--cpu-time", action="store_true",
                        help="one non-spinning onnxruntime thread per session, and compare CPU time: on a loaded "
                             "machine far steadier than the wall-clock time")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    variants = [parse_variant(v) for v in args.variant] or [("this", Path(__file__).resolve().parent.parent, {})]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        for name in args.models:
            if name in bench.TRANSFORMERS:  # one export per batch, the recipe's composite
                for batch in args.batches:
                    onnx_path, x_path = workdir / f"{name}_b{batch}.onnx", workdir / f"{name}_b{batch}.npy"
                    if not onnx_path.exists():
                        onnx_path, _, x_path = bench.prepare_transformer(name, batch, workdir)
                    rows.append(compare(variants, name, bench.TRANSFORMERS[name][0], batch, onnx_path, args.rounds,
                                        Path(tmp), x_path, args.cpu_time))
                continue
            onnx_path = workdir / f"{name}.onnx"
            if not onnx_path.exists():
                onnx_path, _ = bench.prepare(name, workdir)
            for composite in args.composites:
                for batch in args.batches:
                    rows.append(compare(variants, name, composite, batch, onnx_path, args.rounds, Path(tmp),
                                        cpu_time=args.cpu_time))
    print(f"\nload average at the end: {os.getloadavg()}; {'CPU' if args.cpu_time else 'wall-clock'} time")
    labels = [v[0] for v in variants]
    print("| model | batch | composite | " + " | ".join(f"{v} ms" for v in labels) + " | " +
          " | ".join(f"{v} / {labels[0]}" for v in labels[1:]) + " | max rel Δ vs " + labels[0] + " | load |")
    print("|---|---|---|" + "---|" * (2 * len(labels) - 1) + "---|---|")
    for r in rows:
        first = r["median"][labels[0]]
        print(f"| {r['model']} | {r['batch']} | {r['composite']} | " +
              " | ".join(f"{r['median'][v] * 1e3:.0f}" for v in labels) + " | " +
              " | ".join(f"{r['median'][v] / first:.3f}" for v in labels[1:]) +
              f" | {r['diff']:.1e} | {r['load']:.1f} |")
    return 0


def compare(variants, name, composite, batch, onnx_path, rounds, tmp: Path, x_path=None, cpu_time=False) -> dict:
    import numpy as np
    procs = {}
    for label, root, env in variants:  # one at a time: building sessions in parallel would crowd the cores
        spec = dict(onnx_path=str(onnx_path), composite=composite, batch=batch, out=str(tmp / f"{label}.npy"),
                    name=name, x_path=str(x_path) if x_path else None, one_thread=cpu_time)
        procs[label] = start(label, root, env, spec)
        if procs[label].stdout.readline().strip() != "ready":
            raise RuntimeError(f"variant {label} failed to start")
    times = {label: [] for label in procs}
    for _ in range(rounds):
        for label, proc in procs.items():
            proc.stdin.write("\n")
            proc.stdin.flush()
            times[label].append(json.loads(proc.stdout.readline())["cpu" if cpu_time else "t"])
    for proc in procs.values():
        proc.stdin.close()
        proc.wait()
    first = np.load(tmp / f"{variants[0][0]}.npy")
    diff = max(float(np.abs(np.load(tmp / f"{label}.npy") - first).max() / np.abs(first).max()) for label in procs)
    row = dict(model=name, batch=batch, composite=composite, median={k: statistics.median(v) for k, v in times.items()},
               load=os.getloadavg()[0], diff=diff)
    print(json.dumps(row), flush=True)
    return row


if __name__ == "__main__":
    sys.exit(main())
