"""Detached weights are held once: written to the store's scratch file, memory-mapped by the
store and by onnxruntime, and shared by every session an Explainer makes."""
from __future__ import annotations

import gc
import tempfile
from pathlib import Path

import numpy as np
import pytest
from model_builders import make_model, randn, vi
from onnx import helper

from onnx_lrp import Explainer
from onnx_lrp.executor import CPU, make_session
from onnx_lrp.graph import load_detached
from onnx_lrp.weights import tensor_value

WIDTH = 4096  # one 4096×4096 float32 weight: 64 MiB


def dense(width: int = WIDTH, seed: int = 0):
    """x (N, width) -> MatMul W -> Relu -> MatMul V (width, 3): logits."""
    w = (randn((width, width), seed) / np.sqrt(width)).astype(np.float32)
    v = randn((width, 3), seed + 1)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "V"], ["y"])]
    return make_model(nodes, [vi("x", ["N", width])], [vi("y", ["N", 3])], {"W": w, "V": v}), w, v


def oracle_epsilon(x, w, v, target, eps=1e-6):
    """LRP-ε (Bach et al. 2015) for x -> W -> ReLU -> V in float64."""
    x, w, v = (a.astype(np.float64) for a in (x, w, v))
    h = x @ w
    r = np.maximum(h, 0)
    y = r @ v
    rel_y = np.zeros_like(y)
    rel_y[np.arange(len(y)), target] = y[np.arange(len(y)), target]
    rel_r = r * ((rel_y / (y + eps * np.where(y >= 0, 1, -1))) @ v.T)
    return x * ((rel_r / (h + eps * np.where(h >= 0, 1, -1))) @ w.T)


def mapped_mb(path: Path) -> float:
    """Resident memory of this process's mappings of ``path`` (from /proc/self/smaps)."""
    smaps = Path("/proc/self/smaps")
    if not smaps.exists():
        pytest.skip("no /proc/self/smaps on this system")
    total, inside = 0, False
    for line in smaps.read_text().splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and len(fields) >= 5:  # a mapping's header line
            inside = len(fields) >= 6 and fields[5] == str(path)
        elif inside and fields and fields[0] == "Rss:":
            total += int(fields[1])
    return total / 1024


def test_explainer_weights_are_mapped_from_one_scratch_file():
    model, w, v = dense(256)
    explainer = Explainer(model, composite="epsilon", providers=[CPU])
    x = randn((2, 256), 5)
    res = explainer.explain(x)
    store = explainer._weights
    assert store.file is not None and store.file.exists()
    big = [a for a in store.arrays.values() if a.nbytes >= 256 * 256 * 4]
    assert big and all(isinstance(a, np.memmap) and Path(a.filename) == store.file for a in big)
    np.testing.assert_allclose(res.relevance, oracle_epsilon(x, w, v, res.target), rtol=1e-4, atol=1e-6)
    # later sessions (another batch, keep_layers, another shape family member) map the same file
    again = explainer.explain(x[:1], keep_layers=True)
    np.testing.assert_allclose(again.relevance, res.relevance[:1], rtol=1e-5, atol=1e-7)
    assert len(list(store.file.parent.glob("*.onnx"))) == 0  # graph files are removed once read


def test_scratch_file_goes_with_the_explainer():
    model, _, _ = dense(256)
    explainer = Explainer(model, composite="epsilon", providers=[CPU])
    explainer.explain(randn((1, 256)))
    folder = explainer._weights.file.parent
    del explainer
    gc.collect()
    assert not folder.exists()


def test_onnxruntime_does_not_copy_the_weights():
    """Handed over in memory, a session held its own copy of every weight. Spilled, the store holds
    a memory map that it has not read, and onnxruntime computes from its own map of the same
    file: after a run, the file's pages are resident through this process's mappings of it."""
    model, _, _ = dense()
    proto, _, store = load_detached(model)
    weight = next(t for t in proto.graph.initializer if t.name == "W")
    session = make_session(proto, [CPU])
    assert isinstance(tensor_value(weight), np.memmap)  # the store's copy is a map, not an array
    session.run(None, {"x": randn((1, WIDTH))})
    resident = mapped_mb(store.file)
    assert resident >= 60, f"{resident:.1f} MB of the 64 MB weight file is resident through its maps"


def test_unwritable_scratch_folder_falls_back_to_memory(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("read-only file system")
    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    model, w, v = dense(256)
    explainer = Explainer(model, composite="epsilon", providers=[CPU])
    x = randn((2, 256), 6)
    res = explainer.explain(x)
    assert explainer._weights.file is None
    np.testing.assert_allclose(res.relevance, oracle_epsilon(x, w, v, res.target), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int64, np.bool_])
def test_spilled_arrays_read_back_bit_exact(dtype):
    model, _, _ = dense(8)
    proto, _, store = load_detached(model)
    arrays = [np.asarray(randn((64, 80), seed) > 0 if dtype is np.bool_ else randn((64, 80), seed) * 100, dtype)
              for seed in range(3)]
    keys = [store.stub(f"a{i}", a).external_data[0].value.rsplit("/", 1)[1] for i, a in enumerate(arrays)]
    store.spill()
    store.spill()  # nothing new: nothing rewritten
    for key, array in zip(keys, arrays):
        assert isinstance(store.arrays[key], np.memmap)
        np.testing.assert_array_equal(store.arrays[key], array)
        assert store.arrays[key].dtype == array.dtype
        offset, length = store.file_location(key)
        assert offset % 4096 == 0 and length == array.nbytes


def conv_bn(fold_by_hand: bool):
    """x (N, 32, 8, 8) -> Conv (a 36 KB weight) -> BatchNormalization -> Relu -> GlobalAveragePool ->
    Flatten: 32 logits; with ``fold_by_hand`` the BatchNorm is folded into the Conv here."""
    w, bias = randn((32, 32, 3, 3), 3) * 0.1, randn((32,), 4) * 0.1
    scale, shift = 1 + 0.2 * randn((32,), 5), 0.1 * randn((32,), 6)
    mean, var = 0.1 * randn((32,), 7), 1 + 0.1 * np.abs(randn((32,), 8))
    inits = {"W": w, "B": bias}
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1])]
    if fold_by_hand:
        factor = (scale / np.sqrt(var + 1e-5)).astype(np.float32)
        inits = {"W": w * factor[:, None, None, None], "B": (bias - mean) * factor + shift}
        nodes = [helper.make_node("Conv", ["x", "W", "B"], ["h"], pads=[1, 1, 1, 1])]
    else:
        inits.update(scale=scale, shift=shift, mean=mean, var=var)
        nodes.append(helper.make_node("BatchNormalization", ["c", "scale", "shift", "mean", "var"], ["h"]))
    nodes += [helper.make_node("Relu", ["h"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["p"]),
              helper.make_node("Flatten", ["p"], ["y"])]
    return make_model(nodes, [vi("x", ["N", 32, 8, 8])], [vi("y", ["N", 32])], inits), w


def test_weights_only_the_source_model_read_are_not_kept():
    """The Conv weight from before the BatchNorm fold is dropped from the store (never spilled),
    and the explanation is that of the model folded by hand."""
    model, w = conv_bn(fold_by_hand=False)
    explainer = Explainer(model, composite="epsilon_plus", providers=[CPU])
    x = randn((2, 32, 8, 8), 9)
    result = explainer.explain(x, target=[1, 5])
    held = list(explainer._weights.arrays.values())
    assert not any(a.shape == w.shape and np.array_equal(a, w) for a in held)
    pages = sum(-(-a.nbytes // 4096) * 4096 for a in held)
    assert explainer._weights.file.stat().st_size == pages  # the scratch file holds what is held, no more
    folded = Explainer(conv_bn(fold_by_hand=True)[0], composite="epsilon_plus", providers=[CPU])
    np.testing.assert_allclose(result.relevance, folded.explain(x, target=[1, 5]).relevance, rtol=1e-4, atol=1e-6)



MODELS = Path(__file__).resolve().parent.parent / "models"
_EXPLAINER_IN_A_PROCESS = """
import sys, time, numpy, onnx_lrp
explainer = onnx_lrp.Explainer(sys.argv[1])
explainer.explain(numpy.load(sys.argv[3]))  # the first session spills the weights
print(explainer._weights.file.parent, flush=True)
time.sleep(float(sys.argv[2]))
"""


def _explainer_process(seconds: float):
    import subprocess
    import sys
    return subprocess.Popen([sys.executable, "-c", _EXPLAINER_IN_A_PROCESS, str(MODELS / "cifar10_cnn.onnx"),
                             str(seconds), str(MODELS / "samples" / "cat_cifar10.npy")], stdout=subprocess.PIPE, text=True)


def test_a_killed_process_scratch_folder_is_removed_by_the_next_process():
    """SIGKILL leaves no chance to delete the scratch folder (in /dev/shm it holds memory): the next
    process's first spill removes the folders of this host's processes that are gone, and keeps
    those of processes still running."""
    import signal

    alive = Explainer(MODELS / "cifar10_cnn.onnx")
    alive.explain(np.load(MODELS / "samples" / "cat_cifar10.npy"))
    killed = _explainer_process(60)
    orphan = Path(killed.stdout.readline().strip())
    assert orphan.is_dir() and f"-{killed.pid}-" in orphan.name
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert orphan.is_dir()  # nothing removed it yet

    fresh = _explainer_process(0)
    fresh.communicate(timeout=120)
    assert fresh.returncode == 0
    assert not orphan.exists()
    assert alive._weights.file.exists()  # a running process's folder stays
