#!/usr/bin/env python
"""Speed of AttnLRP on all-MiniLM-L6-v2: onnx-lrp vs LXT 2.1 vs the onnxruntime forward pass,
same weights, side by side in one run (CPU).

    python tools/bench_attnlrp.py                    # sequence 128, batch 1 and 8
    python tools/bench_attnlrp.py --seq 64 --batches 1 --threads 2

The model is exported per (batch, sequence) with ``inputs_embeds`` as its input (TorchScript
exporter, fixed shapes); LXT runs the monkey-patched model's forward and backward on the same
embeddings. Times are the median of ``--repeat`` runs after a warm-up; every side uses ``--threads``
threads. The relevance of both is compared (max|ΔR|/max|R|) so the table shows the same work.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import make_attnlrp_fixtures as fx  # noqa: E402

import onnx_lrp  # noqa: E402


def timed(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batches", type=int, nargs="*", default=[1, 8])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    wrapper, module = fx.build("minilm_cls")
    state = {k: v.clone() for k, v in wrapper.state_dict().items()}
    rng = np.random.default_rng(0)
    from safetensors.numpy import load_file
    weights = load_file(str(pathlib.Path(fx.minilm_dir()) / "model.safetensors"))
    table = weights[next(k for k in weights if k.endswith("word_embeddings.weight"))]
    rows, tmp = [], pathlib.Path(tempfile.mkdtemp())
    inputs = {}
    for batch in args.batches:
        x = np.stack([table[rng.integers(0, len(table), args.seq)] for _ in range(batch)]).astype(np.float32)
        path = tmp / f"minilm_b{batch}.onnx"
        fx.export(wrapper, [x], path, "torchscript", ["inputs_embeds"])
        inputs[batch] = (x, path)
    from lxt.efficient import monkey_patch
    import lxt.efficient.models.bert as lxt_bert
    monkey_patch(module, lxt_bert.attnLRP, verbose=False)
    patched, _ = fx.build("minilm_cls", state)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    for batch, (x, path) in inputs.items():
        target = np.zeros(batch, np.int64)
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        t_fwd = timed(lambda: session.run(None, {"inputs_embeds": x}), args.repeat)
        explainer = onnx_lrp.Explainer(path, composite="attnlrp", providers=["CPUExecutionProvider"])
        result = explainer.explain(x, target=target)
        t_lrp = timed(lambda: explainer.explain(x, target=target), args.repeat)

        def lxt():
            inp = torch.from_numpy(x).requires_grad_(True)
            out = patched(inp)
            out[:, 0].sum().backward()
            return (inp * inp.grad).detach().numpy()
        reference = lxt()
        t_lxt = timed(lxt, args.repeat)
        diff = np.abs(result.relevance - reference).max() / np.abs(reference).max()
        rows.append((batch, t_fwd, t_lrp, t_lxt, diff))
    print(f"all-MiniLM-L6-v2, sequence {args.seq}, {args.threads} threads, CPU, median of {args.repeat}")
    print("| batch | ORT forward | onnx-lrp | LXT 2.1 | LXT / onnx-lrp | onnx-lrp / forward | max\\|ΔR\\|/max\\|R\\| |")
    print("|---|---|---|---|---|---|---|")
    for batch, t_fwd, t_lrp, t_lxt, diff in rows:
        print(f"| {batch} | {t_fwd * 1e3:.1f} ms | {t_lrp * 1e3:.1f} ms | {t_lxt * 1e3:.1f} ms | "
              f"{t_lxt / t_lrp:.2f}× | {t_lrp / t_fwd:.2f}× | {diff:.1e} |")


if __name__ == "__main__":
    main()
