"""Peak memory of explaining vs the plain onnxruntime forward, side by side in one run.

Builds torchvision VGG-16 / ResNet-50 with seeded random weights (as tools/bench.py does), and runs
each side in its own process, reporting its peak resident memory (VmHWM, which includes the
weights onnxruntime memory-maps), its cold start (load + compile + session + first run) and
images/s (median of ``--runs`` runs after one warm-up). With ``--baseline DIR`` the onnx-lrp
side also runs from another checkout (e.g. main before a change) in the same run, so that the
before/after ratios come from one machine state.

    python tools/bench_memory.py                                  # VGG-16, ResNet-50; batch 1, 8
    python tools/bench_memory.py --models vgg16 --batches 1 --baseline /path/to/old/checkout

On a busy machine the times move with the load; the memory columns do not.
Needs torch and torchvision (to build the models).
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
import bench  # noqa: E402  (the same models, inputs and VmHWM reading)

ROOT = Path(__file__).resolve().parent.parent


def worker(spec: dict) -> dict:
    x = bench.inputs(spec["batch"])
    start = time.perf_counter()
    if spec["side"] == "forward":
        import onnxruntime as ort
        session = ort.InferenceSession(spec["onnx_path"], providers=["CPUExecutionProvider"])
        run = lambda: session.run(None, {"input": x})  # noqa: E731
    else:
        import onnx_lrp
        explainer = onnx_lrp.Explainer(spec["onnx_path"], composite=spec["composite"],
                                       providers=["CPUExecutionProvider"])
        run = lambda: explainer.explain(x)  # noqa: E731
    run()
    cold = time.perf_counter() - start
    times = bench._timed(run, spec["runs"])
    return {"cold": cold, "images_s": spec["batch"] / statistics.median(times), "peak_rss_mb": bench.peak_rss_mb()}


def spawn(spec: dict, code_root: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(code_root), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True,
                          text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {spec} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["vgg16", "resnet50"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--composites", nargs="+", default=["epsilon", "epsilon_plus_flat"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="another checkout whose onnx-lrp runs beside this one")
    parser.add_argument("--workdir", type=Path, help="keep the exported models here (reused when present)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    sides = [("this", ROOT)] + ([("baseline", args.baseline.resolve())] if args.baseline else [])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        for name in args.models:
            onnx_path = workdir / f"{name}.onnx"
            if not onnx_path.exists():
                onnx_path, _ = bench.prepare(name, workdir)
            for batch in args.batches:
                base = dict(onnx_path=str(onnx_path), batch=batch, runs=args.runs)
                fwd = spawn(dict(base, side="forward"), ROOT)
                for composite in args.composites:
                    for label, root in sides:
                        ours = spawn(dict(base, side="onnx_lrp", composite=composite), root)
                        row = dict(model=name, batch=batch, composite=composite, code=label,
                                   fwd_mb=fwd["peak_rss_mb"], lrp_mb=ours["peak_rss_mb"],
                                   ratio=ours["peak_rss_mb"] / fwd["peak_rss_mb"], fwd_cold=fwd["cold"],
                                   lrp_cold=ours["cold"], fwd_ips=fwd["images_s"], lrp_ips=ours["images_s"])
                        rows.append(row)
                        print(json.dumps(row), flush=True)
    print()
    print("| model | batch | composite | code | peak RSS forward MB | peak RSS explain MB | explain / forward | "
          "cold start forward / explain s | images/s forward / explain |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['batch']} | {r['composite']} | {r['code']} | {r['fwd_mb']:.0f} | {r['lrp_mb']:.0f} | "
              f"{r['ratio']:.2f}× | {r['fwd_cold']:.1f} / {r['lrp_cold']:.1f} | {r['fwd_ips']:.1f} / {r['lrp_ips']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
