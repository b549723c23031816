"""Throughput over a folder of pictures: the command line vs ``Explainer.explain`` in memory.

Writes ``--count`` pictures (224×224 PNGs made from the shipped sample pictures, shifted and
flipped so that no two are the same) to a scratch folder, then runs, each in its own process and
interleaved ``--repeats`` times (the order alternating, so that a machine shared with others
loads both sides alike):

- ``memory``: the same pictures, already decoded and preprocessed, through ``Explainer.explain``
  in batches of the command line's default size, after the compile, with onnxruntime's default
  sessions (``spinning``) and with the command line's (``no spinning``: intra-op threads that wait
  without spin-waiting), batch by batch in turn; the faster of the two is ``memory``;
- ``cli``: ``onnx-lrp MODEL FOLDER --html --json`` (heatmap and overlay PNGs, NPY, JSON, the HTML
  report: everything a user gets), timed from its own JSON as the whole run minus model load and
  compile (``timings_s``), so that start-up does not count;
- ``sequential`` (with ``--sequential``): the command line with its pipeline off
  (``ONNX_LRP_PIPELINE=0,0``: reading, explaining and writing one after the other).

Images/s of each, their ratio per repeat and the load average are printed as a markdown table;
issue "datasets at full speed" targets cli / memory ≥ 0.9. ``--png-levels`` also measures PNG
encoding (CPU per image and bytes, Pillow's ``compress_level`` 0-9) on the heatmaps and overlays
the command line wrote.

    python tools/bench_dataset.py                       # 256 pictures, models/efficientnet_lite0.onnx
    python tools/bench_dataset.py --count 64 --repeats 3 --sequential --png-levels
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
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
    """Images/s of ``Explainer.explain`` on the decoded pictures, with onnxruntime's default sessions and
    with the command line's (intra-op threads not spinning), batch by batch in turn."""
    import numpy as np
    from onnx_lrp import Explainer, executor, inputs
    from onnx_lrp.commands.explain import DEFAULT_BATCH
    explainers = {"spinning": Explainer(model)}
    with executor.extra_session_config(executor.NO_SPINNING):
        explainers["no spinning"] = Explainer(model)
    model_input = inputs.ModelInput.from_dims(explainers["spinning"].input_name, explainers["spinning"].input_shape)
    pre = inputs.resolve(explainers["spinning"].preprocess, model_input)
    x = np.concatenate([next(iter(inputs.load(p, model_input, pre))).x for p in sorted(Path(folder).iterdir())])
    with executor.extra_session_config(executor.NO_SPINNING):
        explainers["no spinning"].compile(x.shape[1:])
    explainers["spinning"].compile(x.shape[1:])
    seconds = dict.fromkeys(explainers, 0.0)
    for i in range(0, len(x), DEFAULT_BATCH):
        for name, explainer in explainers.items():
            start = time.perf_counter()
            explainer.explain(x[i:i + DEFAULT_BATCH])
            seconds[name] += time.perf_counter() - start
    return {name: len(x) / s for name, s in seconds.items()}


def run_memory(model: str, folder: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps({"model": model, "folder": str(folder)})],
                          capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_cli(model: str, folder: Path, out: Path, count: int, pipeline: str | None = None) -> float:
    """Images/s of the command line's directory run (load and compile excluded)."""
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ)
    if pipeline is not None:
        env["ONNX_LRP_PIPELINE"] = pipeline
    cmd = [sys.executable, "-m", "onnx_lrp.cli", model, str(folder), "--out", str(out), "--html", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"the command line failed:\n{proc.stderr[-3000:]}")
    doc = json.loads(proc.stdout)
    if len(doc["results"]) != count:
        raise RuntimeError(f"the command line explained {len(doc['results'])} of {count} pictures")
    compile_s = sum(r["timings_s"]["compile"] for r in doc["results"])
    return count / (doc["timings_s"]["total"] - doc["timings_s"]["load"] - compile_s)


def cpu_profile(model: str, folder: Path, out: Path) -> list[str]:
    """CPU seconds per image of each stage (this process and onnxruntime's threads: process CPU time),
    from one command-line run with its stages one after the other (so that the times do not overlap),
    beside ``Explainer.explain`` in memory: on C cores, a side that keeps them busy makes at most
    C / (CPU per image) images/s, so the ratio of the CPU columns bounds the throughput ratio."""
    import contextlib
    from onnx_lrp import cli, executor, inputs, render
    from onnx_lrp import Explainer
    from onnx_lrp.commands import explain as command
    from onnx_lrp.html import ExplainReport

    spent: dict[str, float] = {}

    def timed(stage, fn):
        def wrapper(*args, **kwargs):
            start = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[stage] = spent.get(stage, 0.0) + time.process_time() - start
        return wrapper

    def timed_load(*args, **kwargs):  # a generator: time each step
        it = iter(loader(*args, **kwargs))
        while True:
            start = time.process_time()
            try:
                item = next(it)
            except StopIteration:
                return
            finally:
                spent["read (decode, preprocess)"] = spent.get("read (decode, preprocess)", 0.0) + (
                    time.process_time() - start)
            yield item

    loader = inputs.load
    patches = [(inputs, "load", timed_load), (Explainer, "explain", timed("explain (onnxruntime)", Explainer.explain)),
               (render, "write_result", timed("NPY + heatmap/overlay PNGs", render.write_result)),
               (ExplainReport, "card", timed("report card (thumbnails)", ExplainReport.card)),
               (render, "save_json", timed("JSON summary", render.save_json)),
               (Explainer, "compile", timed("compile (once; not in the total)", Explainer.compile)),
               (command, "_explain_files", timed("directory run in all", command._explain_files))]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    os.environ["ONNX_LRP_PIPELINE"] = "0,0"
    try:
        for owner, name, fn in patches:
            setattr(owner, name, fn)
        shutil.rmtree(out, ignore_errors=True)
        with contextlib.redirect_stdout(io.StringIO()):
            cli.main([model, str(folder), "--out", str(out), "--html", "--quiet"])
    finally:
        del os.environ["ONNX_LRP_PIPELINE"]
        for owner, name, fn in saved:
            setattr(owner, name, fn)
    count = len(list(folder.iterdir()))
    with executor.extra_session_config(executor.NO_SPINNING):
        memory = _memory_cpu(model, folder)
    spent["directory run in all"] -= spent.pop("compile (once; not in the total)", 0.0)
    rows = ["| stage (one after the other) | CPU per image |", "|---|---|"]
    rows += [f"| {stage} | {seconds / count * 1000:.1f} ms |" for stage, seconds in spent.items()]
    rows.append(f"| `Explainer.explain` in memory (no spinning) | {memory / count * 1000:.1f} ms |")
    return rows


def _memory_cpu(model: str, folder: Path) -> float:
    import numpy as np
    from onnx_lrp import Explainer, inputs
    from onnx_lrp.commands.explain import DEFAULT_BATCH
    explainer = Explainer(model)
    model_input = inputs.ModelInput.from_dims(explainer.input_name, explainer.input_shape)
    pre = inputs.resolve(explainer.preprocess, model_input)
    x = np.concatenate([next(iter(inputs.load(p, model_input, pre))).x for p in sorted(folder.iterdir())])
    explainer.explain(x[:DEFAULT_BATCH])
    start = time.process_time()
    for i in range(0, len(x), DEFAULT_BATCH):
        explainer.explain(x[i:i + DEFAULT_BATCH])
    return time.process_time() - start


def png_levels(out: Path, limit: int = 16) -> list[str]:
    """CPU (this thread) per PNG and mean bytes at each zlib level, on the PNGs the command line wrote."""
    import numpy as np
    from PIL import Image
    rows = ["| PNG | compress_level | CPU per image | bytes | same pixels |", "|---|---|---|---|---|"]
    for kind in ("heatmap", "overlay"):
        arrays = [np.asarray(Image.open(p)) for p in sorted(out.glob(f"*.{kind}.png"))[:limit]]
        for level in range(10):
            sizes, same = [], True
            start = time.thread_time()
            for array in arrays:
                buffer = io.BytesIO()
                Image.fromarray(array).save(buffer, format="PNG", compress_level=level)
                sizes.append(buffer.tell())
            cpu_ms = (time.thread_time() - start) / len(arrays) * 1000
            for array in arrays[:2]:
                buffer = io.BytesIO()
                Image.fromarray(array).save(buffer, format="PNG", compress_level=level)
                same &= bool(np.array_equal(np.asarray(Image.open(buffer)), array))
            rows.append(f"| {kind} | {level} | {cpu_ms:.1f} ms | {statistics.mean(sizes) / 1024:.0f} KiB | {same} |")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(MODEL))
    parser.add_argument("--count", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sequential", action="store_true", help="also the command line with its pipeline off")
    parser.add_argument("--png-levels", action="store_true", help="also PNG encoding cost per zlib level")
    parser.add_argument("--profile", action="store_true", help="also CPU per image of each stage")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker_memory(**json.loads(args.worker))))
        return 0
    sides = {"memory": lambda: run_memory(args.model, folder),
             "cli": lambda: {"cli": run_cli(args.model, folder, out, args.count)}}
    if args.sequential:
        sides["sequential"] = lambda: {"sequential": run_cli(args.model, folder, out, args.count, pipeline="0,0")}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder, out = Path(tmp) / "pictures", Path(tmp) / "out"
        folder.mkdir()
        make_pictures(folder, args.count)
        for repeat in range(args.repeats):
            order = list(sides) if repeat % 2 == 0 else list(sides)[::-1]
            load, row = os.getloadavg()[0], {}
            for name in order:
                row.update(sides[name]())
            row["memory"] = max(row["spinning"], row["no spinning"])  # the faster in-memory way
            rows.append({**row, "load": (load + os.getloadavg()[0]) / 2})
        levels = png_levels(out) if args.png_levels else []
        profile = cpu_profile(args.model, folder, out) if args.profile else []
    print(f"{args.count} pictures 224², {Path(args.model).name}, defaults with --html, {os.cpu_count()} cores; "
          "images/s, load and compile excluded; memory = Explainer.explain on the decoded pictures with "
          "onnxruntime's threads spinning (its default) or not, the faster of the two per repeat")
    names = ["spinning", "no spinning"] + [name for name in sides if name != "memory"]
    ratios = [f"{name} / memory" for name in sides if name != "memory"]
    for row in rows:
        row.update({f"{name} / memory": row[name] / row["memory"] for name in sides if name != "memory"})
    print("| repeat | load average | " + " | ".join(names + ratios) + " |")
    print("|---" * (len(names) + len(ratios) + 2) + "|")
    medians = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
    for label, row in [(str(i + 1), row) for i, row in enumerate(rows)] + [("median", medians)]:
        print(f"| {label} | {row['load']:.1f} | " + " | ".join(f"{row[n]:.1f}" for n in names) + " | "
              + " | ".join(f"**{row[r]:.2f}**" if label == "median" else f"{row[r]:.2f}" for r in ratios) + " |")
    for line in levels + profile:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
