"""Compile time against graph size: long chains of each op kind the canonization passes rewrite.

Builds, for each kind, a chain of ``n`` nodes (``n`` = 1,000 / 3,000 / 10,000 by default) and times
each stage of what :class:`onnx_lrp.Explainer` does before the first explanation: load (check,
opset, weight detaching), canonize (every pass), graph (shape probe + DAG), compile (the explainer
graph) and, with ``--session``, onnxruntime's session creation. Linear growth shows as a constant
time per node (the ``us/node`` column) and a ``x(n/n0)`` ratio near ``n/n0``.

    PYTHONPATH=$PWD python tools/bench_compile.py
    PYTHONPATH=$PWD python tools/bench_compile.py --kinds add_const dropout --sizes 1000 3000 --limit 60

A kind whose total exceeds ``--limit`` seconds at one size is not run at the larger ones (so the
quadratic code this replaced could be measured at all). The chains are those of
``tests/chain_models.py`` (see its table of kinds).
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from chain_models import KINDS, chain  # noqa: E402


def measure(model: onnx.ModelProto, session: bool) -> dict[str, float]:
    """Seconds per stage of an Explainer's first compile."""
    from onnx_lrp import composites
    from onnx_lrp.canonize import canonize
    from onnx_lrp.compile import compile_explainer
    from onnx_lrp.executor import CPU, make_session
    from onnx_lrp.graph import ModelGraph, load_detached
    from onnx_lrp.probe import probe

    times, clock = {}, time.perf_counter()

    def lap(stage):
        nonlocal clock
        now = time.perf_counter()
        times[stage], clock = now - clock, now

    proto, label, _store = load_detached(model)
    lap("load")
    canon = canonize(proto, "y")
    lap("canonize")
    x = canon.model.graph.input[0]
    shape = tuple(d.dim_value for d in x.type.tensor_type.shape.dim)
    shapes, dtypes = probe(canon.model, {"x": np.zeros(shape, np.float32)}, label)
    g = ModelGraph.build(canon.model, label, "x", canon.output, shapes, dtypes)
    lap("graph")
    compiled = compile_explainer(g, composites.get("epsilon_plus_flat"))
    lap("compile")
    if session:
        make_session(compiled.model, [CPU])
        lap("session")
    times["total"] = sum(times.values())
    times["nodes_after"] = len(canon.model.graph.node)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[1000, 3000, 10000])
    parser.add_argument("--limit", type=float, default=120.0,
                        help="skip a kind's larger sizes once one size took longer than this (s)")
    parser.add_argument("--session", action="store_true", help="also time onnxruntime's session creation")
    args = parser.parse_args(argv)
    stages = ["load", "canonize", "graph", "compile"] + (["session"] if args.session else [])
    print(f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"onnx {onnx.__version__}")
    header = ["kind", "n", "nodes after"] + [f"{s} s" for s in stages] + ["total s", "us/node", "x(n/n0)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for kind in args.kinds:
        first = None
        for n in sorted(args.sizes):
            t = measure(chain(kind, n), args.session)
            first = first or (n, t["total"])
            growth = f"{t['total'] / first[1]:.1f} ({n / first[0]:.0f})"
            row = [kind, str(n), str(t["nodes_after"])] + [f"{t[s]:.2f}" for s in stages] + [
                f"{t['total']:.2f}", f"{1e6 * t['total'] / n:.0f}", growth]
            print("| " + " | ".join(row) + " |", flush=True)
            if t["total"] > args.limit:
                print(f"| {kind} | larger sizes skipped: {t['total']:.0f} s > --limit {args.limit:.0f} s |")
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
