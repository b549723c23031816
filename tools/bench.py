"""Benchmark: onnx-lrp vs Zennit vs a plain onnxruntime forward, side by side on one machine.

Builds torchvision VGG-16 and ResNet-50 with the same seeded weights for both sides, exports
them to ONNX, and times, on the same inputs: the onnxruntime forward, onnx-lrp's explain, and
Zennit with the equivalent composite and canonizers (registered once, as a user would). Each
side runs in its own process so its peak memory (max RSS) is its own. Medians of several runs
after warm-up; cold start = load + compile + session creation + first explain. The relevances
of both sides are compared (Pearson, max|Δ|/max|R_zennit|) so a fast wrong answer cannot pass.

    python tools/bench.py                 # full table (about 20 minutes on 2 cores)
    python tools/bench.py --models vgg16 --batches 1 --runs 3
    python tools/bench.py --device cuda --batches 1 32      # onnxruntime-gpu and torch with CUDA

With ``--device cuda`` every side runs on the GPU: onnxruntime's CUDAExecutionProvider for the
forward and onnx-lrp, torch on ``cuda`` for Zennit. onnx-lrp is timed twice: ``explain()`` as a
user calls it (host arrays in and out) and the compiled graph alone through IOBinding (input and
relevance stay on the device), which is what a pipeline that keeps data on the GPU pays.

Needs the ``dev`` extra (torch, torchvision, zennit).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)
LOW, HIGH = (0 - MEAN) / STD, (1 - MEAN) / STD


# --- model preparation (main process, needs torch) ----------------------------------------
def build_torch(name: str):
    import torch
    import torchvision
    torch.manual_seed(0)
    model = {"vgg16": torchvision.models.vgg16, "resnet50": torchvision.models.resnet50}[name]()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
            elif getattr(module, "bias", None) is not None and isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                module.bias.uniform_(-0.01, 0.01)
    return model.eval()


def prepare(name: str, workdir: Path) -> tuple[Path, Path]:
    import torch
    model = build_torch(name)
    onnx_path, state_path = workdir / f"{name}.onnx", workdir / f"{name}.pt"
    torch.onnx.export(model, torch.zeros(1, 3, 224, 224), str(onnx_path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "N"}})
    torch.save(model.state_dict(), state_path)
    return onnx_path, state_path


def inputs(batch: int) -> np.ndarray:
    u = np.random.default_rng(batch).uniform(0, 1, (batch, 3, 224, 224)).astype(np.float32)
    return (u - MEAN) / STD


# --- workers (one process per side) -----------------------------------------------------
def providers(device: str) -> list[str]:
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]


def load_cuda_libraries(device: str) -> None:
    """onnxruntime-gpu finds CUDA/cuDNN where torch's wheels put them once torch is imported."""
    if device == "cuda":
        import torch  # noqa: F401
        import onnxruntime as ort
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeError(f"onnxruntime {ort.__version__} offers no CUDAExecutionProvider "
                               f"({ort.get_available_providers()}); install onnxruntime-gpu")


def worker_forward(onnx_path, batch, runs, device="cpu", **_):
    load_cuda_libraries(device)
    import onnxruntime as ort
    x = inputs(batch)
    start = time.perf_counter()
    from onnx_lrp.executor import PROVIDER_OPTIONS  # the same float32 settings as onnx-lrp's sessions
    session = ort.InferenceSession(str(onnx_path), providers=providers(device),
                                   provider_options=[PROVIDER_OPTIONS.get(p, {}) for p in providers(device)])
    session.run(None, {"input": x})
    cold = time.perf_counter() - start
    result = {"cold": cold, "times": _timed(lambda: session.run(None, {"input": x}), runs)}
    if device == "cuda":
        result["bound_times"] = _timed(_bound_run(session, {"input": x}), runs)
    return result


def _bound_run(session, feeds: dict):
    """A run through IOBinding: inputs copied to the GPU once, outputs left there."""
    import onnxruntime as ort
    binding = session.io_binding()
    for name, value in feeds.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, "cuda", 0))
    for out in session.get_outputs():
        binding.bind_output(out.name, "cuda")

    def run():
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()
    return run


def worker_onnx_lrp(onnx_path, batch, runs, composite, out, device="cpu", **_):
    load_cuda_libraries(device)
    import onnx_lrp
    x = inputs(batch)
    kwargs = {"low": LOW, "high": HIGH} if composite == "epsilon_gamma_box" else {}
    start = time.perf_counter()
    explainer = onnx_lrp.Explainer(str(onnx_path), composite=composite, providers=providers(device), **kwargs)
    res = explainer.explain(x)
    cold = time.perf_counter() - start
    np.save(out, res.relevance)
    result = {"cold": cold, "times": _timed(lambda: explainer.explain(x), runs), "target": res.target.tolist()}
    if device == "cuda":
        result["bound_times"] = _timed(_bound_explainer(explainer, x), runs)
    return result


def _bound_explainer(explainer, x: np.ndarray):
    """The compiled explainer graph alone, through IOBinding."""
    from onnx_lrp.executor import make_session
    compiled = explainer.compile(x.shape[1:])
    session = make_session(compiled.model, explainer.providers)
    names = [i.name for i in session.get_inputs()]
    feeds = {names[0]: x, names[1]: np.full(len(x), -1, np.int64)}  # data, then target (-1: predicted)
    return _bound_run(session, feeds)


def worker_zennit(state_path, name, batch, runs, composite, out, target, device="cpu", **_):
    import torch
    import torchvision
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonGammaBox, EpsilonPlusFlat
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer
    x = torch.from_numpy(inputs(batch)).to(device)
    start = time.perf_counter()
    model = {"vgg16": torchvision.models.vgg16, "resnet50": torchvision.models.resnet50}[name]()
    model.load_state_dict(torch.load(state_path))
    model.eval().to(device)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # float32, as onnx-lrp
    canonizers = [ResNetCanonizer()] if name == "resnet50" else [VGGCanonizer()]
    if composite == "epsilon_gamma_box":
        comp = EpsilonGammaBox(low=torch.from_numpy(np.broadcast_to(LOW, x.shape).copy()).to(device),
                               high=torch.from_numpy(np.broadcast_to(HIGH, x.shape).copy()).to(device),
                               canonizers=canonizers)
    else:
        comp = EpsilonPlusFlat(canonizers=canonizers)
    onehot = torch.zeros(batch, 1000, device=device)
    onehot[torch.arange(batch), torch.tensor(target)] = 1.0
    with Gradient(model, comp) as attributor:
        def run():
            relevance = attributor(x, lambda out: onehot * out)[1]
            if device == "cuda":
                torch.cuda.synchronize()
            return relevance
        relevance = run()
        cold = time.perf_counter() - start
        times = _timed(run, runs)
    np.save(out, relevance.detach().cpu().numpy())
    return {"cold": cold, "times": times}


def _timed(fn, runs) -> list[float]:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


WORKERS = {"forward": worker_forward, "onnx_lrp": worker_onnx_lrp, "zennit": worker_zennit}


def run_worker(args) -> None:
    spec = json.loads(args.worker)
    result = WORKERS[spec.pop("side")](**spec)
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). ru_maxrss is not used: Linux carries it over
    from the forking parent across exec, so every worker would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def spawn(**spec) -> dict:
    cmd = [sys.executable, __file__, "--worker", json.dumps(spec, default=str)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {spec['side']} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- main -----------------------------------------------------------------------------
def agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    pearson = min(float(np.corrcoef(a[i].ravel(), b[i].ravel())[0, 1]) for i in range(len(a)))
    rel = max(float(np.abs(a[i] - b[i]).max() / np.abs(b[i]).max()) for i in range(len(a)))
    return pearson, rel


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["vgg16", "resnet50"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--composites", nargs="+", default=["epsilon_plus_flat", "epsilon_gamma_box"])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        run_worker(args)
        return 0
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}, device {args.device}{gpu_name(args.device)}", flush=True)
    rows, ok = [], True
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for name in args.models:
            onnx_path, state_path = prepare(name, workdir)
            for batch in args.batches:
                fwd = spawn(side="forward", onnx_path=str(onnx_path), batch=batch, runs=args.runs, device=args.device)
                for composite in args.composites:
                    row, good = bench_one(name, batch, composite, onnx_path, state_path, fwd, workdir, args.runs,
                                          args.device)
                    rows.append(row)
                    ok &= good
                    print(row, flush=True)
    print_table(rows)
    if args.device == "cuda":
        print_bound_table(rows)
    return 0 if ok else 1


def gpu_name(device: str) -> str:
    if device != "cuda":
        return ""
    import torch
    return f" ({torch.cuda.get_device_name(0)}, torch {torch.__version__})"


def bench_one(name, batch, composite, onnx_path, state_path, fwd, workdir, runs, device="cpu"):
    ours_out, theirs_out = workdir / "ours.npy", workdir / "theirs.npy"
    ours = spawn(side="onnx_lrp", onnx_path=str(onnx_path), batch=batch, runs=runs, composite=composite,
                 out=str(ours_out), device=device)
    theirs = spawn(side="zennit", state_path=str(state_path), name=name, batch=batch, runs=runs,
                   composite=composite, out=str(theirs_out), target=ours["target"], device=device)
    pearson, rel = agreement(np.load(ours_out), np.load(theirs_out))
    t_fwd, t_ours, t_theirs = (statistics.median(r["times"]) for r in (fwd, ours, theirs))
    good = pearson >= 0.9999 and rel <= 1e-3
    row = dict(model=name, batch=batch, composite=composite, forward_ms=t_fwd * 1e3, onnx_lrp_ms=t_ours * 1e3,
               zennit_ms=t_theirs * 1e3, speedup=t_theirs / t_ours, x_forward=t_ours / t_fwd,
               cold_onnx_lrp_s=ours["cold"], cold_zennit_s=theirs["cold"], rss_forward_mb=fwd["peak_rss_mb"],
               rss_onnx_lrp_mb=ours["peak_rss_mb"], rss_zennit_mb=theirs["peak_rss_mb"],
               images_s_onnx_lrp=batch / t_ours, images_s_zennit=batch / t_theirs, pearson=pearson,
               max_rel_diff=rel, agree=good)
    if "bound_times" in ours:
        row.update(forward_bound_ms=statistics.median(fwd["bound_times"]) * 1e3,
                   onnx_lrp_bound_ms=statistics.median(ours["bound_times"]) * 1e3)
    return row, good


def print_table(rows) -> None:
    print()
    print("| model | batch | composite | ORT forward ms | onnx-lrp ms | Zennit ms | speed-up vs Zennit | "
          "onnx-lrp / forward | images/s onnx-lrp / Zennit | cold start onnx-lrp / Zennit s | "
          "peak RSS forward / onnx-lrp / Zennit MB | peak RSS onnx-lrp / forward | agreement (min Pearson, max rel Δ) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['batch']} | {r['composite']} | {r['forward_ms']:.0f} | {r['onnx_lrp_ms']:.0f} | "
              f"{r['zennit_ms']:.0f} | {r['speedup']:.1f}× | {r['x_forward']:.2f}× | "
              f"{r['images_s_onnx_lrp']:.1f} / {r['images_s_zennit']:.1f} | "
              f"{r['cold_onnx_lrp_s']:.1f} / {r['cold_zennit_s']:.1f} | {r['rss_forward_mb']:.0f} / "
              f"{r['rss_onnx_lrp_mb']:.0f} / {r['rss_zennit_mb']:.0f} | {r['rss_onnx_lrp_mb'] / r['rss_forward_mb']:.2f}× | "
              f"{r['pearson']:.6f}, {r['max_rel_diff']:.1e} {'ok' if r['agree'] else 'FAIL'} |")


def print_bound_table(rows) -> None:
    """GPU times with data kept on the device (IOBinding) beside Zennit's."""
    print()
    print("| model | batch | composite | ORT forward (IOBinding) ms | onnx-lrp (IOBinding) ms | Zennit ms | "
          "speed-up vs Zennit | onnx-lrp / forward |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['batch']} | {r['composite']} | {r['forward_bound_ms']:.1f} | "
              f"{r['onnx_lrp_bound_ms']:.1f} | {r['zennit_ms']:.1f} | {r['zennit_ms'] / r['onnx_lrp_bound_ms']:.1f}× | "
              f"{r['onnx_lrp_bound_ms'] / r['forward_bound_ms']:.2f}× |")


if __name__ == "__main__":
    sys.exit(main())
