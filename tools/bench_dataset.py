"""Throughput over a folder of pictures: the command line vs ``Explainer.explain`` in memory.

Writes ``--count`` pictures (224×224 PNGs made from the shipped sample pictures, shifted and
flipped so that no two are the same) to a scratch folder, then, side by side in one run and each
in its own process:

- ``cli``: ``onnx-lrp MODEL FOLDER --html --quiet`` (heatmap and overlay PNGs, NPY, JSON, the HTML
  report: everything a user gets), timed as the whole process minus the same command on one
  picture (imports, model load, compile, one picture), so that start-up does not count;
- ``memory``: the same pictures, already decoded and preprocessed, through ``Explainer.explain``
  in batches of the command line's default size, after the same compile.

Images/s of both and their ratio are what issue "datasets at full speed" targets (≥ 0.9).

    python tools/bench_dataset.py                       # 256 pictures, models/efficientnet_lite0.onnx
    python tools/bench_dataset.py --count 64
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "efficientnet_lite0.onnx"
SOURCES = [ROOT / "models" / "samples" / name for name in ("cat.png", "coffee.png")]


def make_pictures(folder: Path, count: int, size: int = 224) -> list[Path]:
    import numpy as np
    from PIL import Image
    bases = [np.asarray(Image.open(p).convert("RGB").resize((size + 32, size + 32))) for p in SOURCES]
    paths = []
    for i in range(count):
        base = bases[i % len(bases)]
        dy, dx = (i // 2) % 32, (i // 64) % 32
        crop = base[dy:dy + size, dx:dx + size]
        crop = crop[:, ::-1] if (i // 2) % 2 else crop
        path = folder / f"picture_{i:04d}.png"
        Image.fromarray(np.ascontiguousarray(crop)).save(path)
        paths.append(path)
    return paths


def worker_memory(model: str, folder: str) -> dict:
    import numpy as np
    from onnx_lrp import Explainer, inputs
    from onnx_lrp.commands.explain import DEFAULT_BATCH
    explainer = Explainer(model)
    model_input = inputs.ModelInput.from_dims(explainer.input_name, explainer.input_shape)
    pre = explainer.preprocess
    x = np.concatenate([next(iter(inputs.load(p, model_input, pre))).x for p in sorted(Path(folder).iterdir())])
    explainer.compile(x.shape[1:])
    start = time.perf_counter()
    for i in range(0, len(x), DEFAULT_BATCH):
        explainer.explain(x[i:i + DEFAULT_BATCH])
    return {"seconds": time.perf_counter() - start, "count": len(x)}


def run_cli(model: str, folder: Path, out: Path) -> dict:
    cmd = [sys.executable, "-m", "onnx_lrp.cli", model, str(folder), "--out", str(out), "--html", "--json"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    total = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"the command line failed:\n{proc.stderr[-3000:]}")
    summary = json.loads(proc.stdout)
    return {"total_s": total, "explained": len(summary.get("results", [])) if isinstance(summary, dict) else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(MODEL))
    parser.add_argument("--count", type=int, default=256)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker_memory(**json.loads(args.worker))))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        folder, out = Path(tmp) / "pictures", Path(tmp) / "out"
        folder.mkdir()
        make_pictures(folder, args.count)
        proc = subprocess.run([sys.executable, __file__, "--worker",
                               json.dumps({"model": args.model, "folder": str(folder)})],
                              capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-3000:])
        memory = json.loads(proc.stdout.strip().splitlines()[-1])
        cli = run_cli(args.model, folder, out)
        if cli["explained"] != args.count:
            raise RuntimeError(f"the command line explained {cli['explained']} of {args.count} pictures")
        # the command line's own start-up (imports, model load, compile) from a run on one picture
        one = Path(tmp) / "one"
        one.mkdir()
        (one / "p.png").write_bytes(next(folder.iterdir()).read_bytes())
        startup = run_cli(args.model, one, Path(tmp) / "out_one")["total_s"]
    mem_ips = memory["count"] / memory["seconds"]
    # the one-picture run holds the start-up and one picture: the other count - 1 took the difference
    cli_ips = (args.count - 1) / max(cli["total_s"] - startup, 1e-9)
    print(f"| pictures | Explainer.explain in memory, images/s | command line (--html), images/s "
          f"(start-up {startup:.1f} s excluded) | command line / in memory |")
    print("|---|---|---|---|")
    print(f"| {args.count} | {mem_ips:.1f} | {cli_ips:.1f} | {cli_ips / mem_ips:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
