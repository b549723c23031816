"""Where an explainer's time goes: onnxruntime's profiler, summed per op type and provider.

    python tools/profile_explainer.py models/efficientnet_lite0.onnx --batch 8
    python tools/profile_explainer.py --torchvision vgg16 --batch 32 --device cuda   # needs torch

Prints one row per (op type, provider): total ms per run, share of the run, node count. Nodes
placed on the CPU in a CUDA run, and the Memcpy nodes onnxruntime adds around them, show up as
their own rows.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort

import onnx_lrp
from onnx_lrp.executor import CPU, CUDA, PROVIDER_OPTIONS, session_options
from onnx_lrp.weights import external_arrays


def torchvision_model(name: str, workdir: Path) -> Path:
    import torch
    import torchvision
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)().eval()
    path = workdir / f"{name}.onnx"
    torch.onnx.export(model, torch.zeros(1, 3, 224, 224), str(path), dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "N"}})
    return path


def profiled_session(model, providers: list[str], workdir: Path) -> ort.InferenceSession:
    opts = session_options()
    opts.enable_profiling = True
    opts.profile_file_prefix = str(workdir / "profile")
    names, arrays = external_arrays(model)
    if names:
        opts.add_external_initializers(names, [ort.OrtValue.ortvalue_from_numpy(a) for a in arrays])
    return ort.InferenceSession(model.SerializeToString(), sess_options=opts, providers=providers,
                                provider_options=[PROVIDER_OPTIONS.get(p, {}) for p in providers])


def node_times(profile: Path, runs: int) -> dict[tuple[str, str], list[float]]:
    """(op type, provider) -> [ms per run, node count] over the timed runs (warm-up excluded)."""
    events = json.loads(profile.read_text())
    kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    per_run = len(kernels) // (runs + 1)
    totals: dict = defaultdict(lambda: [0.0, 0])
    for e in kernels[per_run:]:  # the first run is the warm-up
        key = (e["args"].get("op_name", "?"), e["args"].get("provider", "?"))
        totals[key][0] += e["dur"] / 1e3 / runs
    for e in kernels[:per_run]:
        totals[(e["args"].get("op_name", "?"), e["args"].get("provider", "?"))][1] += 1
    return dict(totals)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?")
    parser.add_argument("--torchvision", help="export this torchvision model (random weights) instead")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--composite", default="epsilon_plus_flat")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    providers = [CUDA, CPU] if args.device == "cuda" else [CPU]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        path = torchvision_model(args.torchvision, workdir) if args.torchvision else Path(args.model)
        explainer = onnx_lrp.Explainer(str(path), composite=args.composite, providers=providers)
        shape = [d if isinstance(d, int) and d > 0 else 224 for d in explainer.input_shape[1:]]
        x = np.random.default_rng(0).standard_normal([args.batch] + shape).astype(np.float32)
        compiled = explainer.compile(tuple(shape))
        session = profiled_session(compiled.model, providers, workdir)
        feeds = {session.get_inputs()[0].name: x, session.get_inputs()[1].name: np.full(args.batch, -1, np.int64)}
        for _ in range(args.runs + 1):
            session.run(None, feeds)
        totals = node_times(Path(session.end_profiling()), args.runs)
    whole = sum(ms for ms, _ in totals.values())
    print(f"{path.name}, batch {args.batch}, {args.composite}, {args.device}: {whole:.1f} ms of kernels per run")
    print("| op type | provider | ms per run | share | nodes |")
    print("|---|---|---|---|---|")
    for (op, provider), (ms, count) in sorted(totals.items(), key=lambda kv: -kv[1][0]):
        print(f"| {op} | {provider.replace('ExecutionProvider', '')} | {ms:.2f} | {ms / whole:.1%} | {count} |")


if __name__ == "__main__":
    main()
