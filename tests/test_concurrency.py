"""One Explainer shared by 8 threads gives exactly the single-thread results; two processes
writing into the same --out leave every file complete."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import onnx_lrp
from onnx_lrp import explainer as explainer_module

ROOT = Path(__file__).resolve().parents[1]
THREADS = 8


def _dynamic_cnn() -> onnx.ModelProto:
    """Conv -> Relu -> global average pool -> Gemm on (N, 3, H, W): every image size compiles anew."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(0, 0.1, 4).astype(np.float32), "b"),
             numpy_helper.from_array(rng.normal(0, 0.5, (5, 4)).astype(np.float32), "wd"),
             numpy_helper.from_array(np.zeros(5, np.float32), "bd")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "wd", "bd"], ["y"], name="dense", transB=1)]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _jobs():
    """(input, keep_layers) per job: three image sizes and both layer settings, so that threads
    ask for the same uncompiled shape at the same time."""
    rng = np.random.default_rng(1)
    sizes = [(8, 8), (12, 10), (16, 16)]
    return [(rng.normal(size=(2, 3, *sizes[i % 3])).astype(np.float32), i % 2 == 1) for i in range(3 * THREADS)]


def test_one_explainer_in_eight_threads_equals_single_thread(monkeypatch):
    model, jobs = _dynamic_cnn(), _jobs()
    single = onnx_lrp.Explainer(model)
    expected = [single.explain(x, keep_layers=keep) for x, keep in jobs]

    compiles = []
    original = explainer_module.compile_explainer
    monkeypatch.setattr(explainer_module, "compile_explainer",
                        lambda *a, **k: compiles.append(1) or original(*a, **k))
    shared = onnx_lrp.Explainer(model)
    results, errors = [None] * len(jobs), []
    start = threading.Barrier(THREADS)

    def work(t):
        start.wait()
        try:
            for i in range(t, len(jobs), THREADS):
                results[i] = shared.explain(jobs[i][0], keep_layers=jobs[i][1])
        except Exception as exc:  # noqa: BLE001 - reported below with the thread
            errors.append((t, exc))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got.relevance, want.relevance)
        np.testing.assert_array_equal(got.output, want.output)
        assert got.layers.keys() == want.layers.keys()
        for name in want.layers:
            np.testing.assert_array_equal(got.layers[name], want.layers[name])
    assert len(compiles) == 6  # each (shape, keep_layers) compiled once, however many threads asked


def test_two_processes_writing_into_one_out_directory(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    cat = np.load(ROOT / "models" / "samples" / "cat_cifar10.npy").astype(np.float32)
    rng = np.random.default_rng(0)
    for i in range(6):
        np.save(src / f"img{i}.npy", cat + rng.normal(0, 0.1, cat.shape).astype(np.float32))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "onnx_lrp", str(ROOT / "models" / "cifar10_cnn.onnx"), str(src), "--out", str(out),
            "--json"]
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    docs = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        docs.append(json.loads(stdout))
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left behind
    first, second = ({r["name"]: r for r in doc["results"]} for doc in docs)
    assert first.keys() == second.keys() == {f"img{i}" for i in range(6)}
    for name, result in first.items():
        relevance = np.load(out / f"{name}.relevance.npy")  # complete: np.load checks the size
        assert result["relevance_sum"] == second[name]["relevance_sum"]
        assert abs(float(relevance.sum(dtype=np.float64)) - result["relevance_sum"]) <= 1e-5 * max(
            1.0, abs(result["relevance_sum"]))
        summary = json.loads((out / f"{name}.json").read_text())
        assert summary["relevance_sum"] == result["relevance_sum"]
