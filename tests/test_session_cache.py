"""The per-shape cache of compiled programs is bounded: beyond ``cache_size`` input shapes the least
recently used is forgotten, its session and the weights derived for it are released (their pages
of the scratch file freed and reused), results do not change, and threads share it."""
from __future__ import annotations

import gc
import os
import threading

import numpy as np
import pytest
from model_builders import make_model, randn, vi
from onnx import helper

import onnx_lrp
from onnx_lrp import explainer as explainer_module
from onnx_lrp.attribution import attribute
from onnx_lrp.sessions import DEFAULT_CACHE_SIZE
from onnx_lrp.weights import WeightStore, materialize

COMPOSITE = "epsilon_alpha2_beta1_flat"  # its rules derive W⁺ and W⁻ per compile: arrays in the store


def fully_convolutional():
    """x (N, 3, H, W) -> Conv 16 -> Relu -> Conv 64 -> Relu -> global average pool -> Gemm (N, 5):
    any picture size; the second weight (147 KB) and what the rules derive from it live in the
    weight store."""
    inits = {"w1": randn((16, 3, 3, 3), 1) * 0.5, "b1": randn((16,), 2) * 0.1,
             "w2": randn((64, 16, 3, 3), 3) * 0.2, "wd": randn((5, 64), 4) * 0.5, "bd": np.zeros(5, np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "wd", "bd"], ["y"], transB=1)]
    return make_model(nodes, [vi("x", ["N", 3, "H", "W"])], [vi("y", ["N", 5])], inits)


def pictures(count: int, seed: int = 0) -> list[np.ndarray]:
    """One picture of each of ``count`` sizes."""
    return [randn((1, 3, 4 + i, 5 + i), seed + i) for i in range(count)]


def test_more_shapes_than_the_cache_holds_keep_at_most_its_size():
    exp = onnx_lrp.Explainer(fully_convolutional(), composite=COMPOSITE, cache_size=3)
    for i, x in enumerate(pictures(7)):
        exp.explain(x)
        exp.explain(x, keep_layers=True)  # a second program of the same shape: still one shape
        assert len(exp.sessions) == min(i + 1, 3)
        assert exp.sessions.programs() == 2 * len(exp.sessions)
    assert exp.sessions.evictions == 4
    assert [key[0][1] for key in exp.sessions.keys()] == [(3, 8, 9), (3, 9, 10), (3, 10, 11)]  # the 3 latest


def test_least_recently_used_shape_goes_first():
    exp = onnx_lrp.Explainer(fully_convolutional(), cache_size=2)
    a, b, c = pictures(3)
    exp.explain(a)
    exp.explain(b)
    exp.explain(a)  # a is now the most recent
    exp.explain(c)  # evicts b
    assert [key[0][1] for key in exp.sessions.keys()] == [a.shape[1:], c.shape[1:]]


def test_results_after_eviction_equal_a_fresh_explainer():
    xs = pictures(5, seed=10)
    small = onnx_lrp.Explainer(fully_convolutional(), composite=COMPOSITE, cache_size=1)
    first = [small.explain(x, target=2) for x in xs]
    again = [small.explain(x, target=2) for x in xs]  # every one compiled anew after its eviction
    assert small.sessions.evictions >= 9
    for x, one, two in zip(xs, first, again):
        fresh = onnx_lrp.Explainer(fully_convolutional(), composite=COMPOSITE).explain(x, target=2)
        for got in (one, two):
            np.testing.assert_array_equal(got.relevance, fresh.relevance)
            np.testing.assert_array_equal(got.output, fresh.output)


def test_threads_share_a_small_cache(monkeypatch):
    """8 threads over 5 shapes with room for 2: shapes are evicted while other threads run them;
    every result equals the single-thread one and the cache never holds more than 2 shapes."""
    xs = pictures(5, seed=20)
    jobs = [xs[i % 5] for i in range(40)]
    expected = {x.shape: onnx_lrp.Explainer(fully_convolutional(), composite=COMPOSITE).explain(x) for x in xs}
    shared = onnx_lrp.Explainer(fully_convolutional(), composite=COMPOSITE, cache_size=2)
    sizes, errors, results = [], [], [None] * len(jobs)
    original = explainer_module.compile_explainer

    def counting_compile(*args, **kwargs):
        sizes.append(len(shared.sessions))
        return original(*args, **kwargs)

    monkeypatch.setattr(explainer_module, "compile_explainer", counting_compile)
    start = threading.Barrier(8)

    def work(t):
        start.wait()
        try:
            for i in range(t, len(jobs), 8):
                results[i] = shared.explain(jobs[i])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert max(sizes) <= 2 and len(shared.sessions) <= 2
    for x, got in zip(jobs, results):
        np.testing.assert_array_equal(got.relevance, expected[x.shape].relevance)
        np.testing.assert_array_equal(got.output, expected[x.shape].output)


def _allocated(path) -> int:
    return os.stat(path).st_blocks * 512


def test_evicted_shapes_release_their_weights_and_scratch_pages():
    exp = onnx_lrp.Explainer(fully_convolutional(), composite=COMPOSITE, cache_size=2)
    store = exp._weights
    base_keys = set(store.arrays)
    xs = pictures(8, seed=30)
    exp.explain(xs[0])
    exp.explain(xs[1])
    two_shapes = store.used_bytes()
    file_size = os.path.getsize(store.file)
    per_shape = set(store.arrays) - base_keys
    assert per_shape, "the rules' derived weights should live in the store"
    for x in xs[2:]:
        exp.explain(x)
        gc.collect()
        assert store.used_bytes() == two_shapes  # what the evicted shapes derived is gone
    assert os.path.getsize(store.file) <= file_size, "freed pages are reused, the file does not grow"
    assert not per_shape & set(store.arrays)
    assert os.listdir(store.file.parent) == ["weights.bin"]  # no graph files left behind


def test_punched_pages_are_given_back(tmp_path):
    """Released arrays' pages are freed (where the file system can punch holes) and reused."""
    store = WeightStore()
    keep = store.stub("keep", np.ones(8192, np.float32))
    keys = []
    with store.recording(keys):
        store.stub("a", np.full(8192, 2, np.float32))
        store.stub("b", np.full(8192, 3, np.float32))
    store.spill()
    before = _allocated(store.file)
    store.release(keys)
    assert set(store.arrays) == {keep.external_data[0].value.rsplit("/", 1)[1]}
    if _allocated(store.file) == before:
        pytest.skip("this file system does not free punched pages")
    assert _allocated(store.file) <= before - 2 * 32768
    size = os.path.getsize(store.file)
    store.stub("c", np.full(8192, 4, np.float32))
    store.spill()
    assert os.path.getsize(store.file) == size, "the freed range is written again"
    np.testing.assert_array_equal(np.asarray(store.arrays["0"]), 1)
    np.testing.assert_array_equal(np.asarray(store.arrays["3"]), 4)
    store.close()


def test_a_program_held_by_the_caller_outlives_its_eviction():
    """compile() hands out a program: its weights stay readable after the shape is evicted and
    are released when the caller drops it."""
    exp = onnx_lrp.Explainer(fully_convolutional(), composite=COMPOSITE, cache_size=1)
    store = exp._weights
    a, b = pictures(2, seed=40)
    held = exp.compile(a.shape[1:])
    expected = materialize(held.model)
    exp.explain(b)  # evicts a
    assert len(exp.sessions) == 1 and a.shape[1:] not in [k[0][1] for k in exp.sessions.keys()]
    again = materialize(held.model)  # no KeyError: the arrays are still there
    assert [t.raw_data for t in again.graph.initializer] == [t.raw_data for t in expected.graph.initializer]
    in_use = store.used_bytes()
    del held
    gc.collect()
    assert store.used_bytes() < in_use


def test_close_removes_the_scratch_folder_and_the_explainer_still_works():
    x = pictures(1, seed=50)[0]
    with onnx_lrp.Explainer(fully_convolutional(), composite=COMPOSITE) as exp:
        before = exp.explain(x)
        folder = exp._weights.file.parent
        assert folder.exists()
    assert not folder.exists() and len(exp.sessions) == 0
    after = exp.explain(x)  # compiles again, into a new scratch file
    np.testing.assert_array_equal(after.relevance, before.relevance)
    exp.close()
    assert exp._weights.file is None


def test_attributor_gradients_share_the_explainers_cache():
    exp = onnx_lrp.Explainer(fully_convolutional(), cache_size=2)
    for x in pictures(4, seed=60):
        attribute(exp, x, method="gradient")
        assert len(exp.sessions) <= 2
    variants = {variant for entry in exp.sessions._entries.values() for variant in entry.programs}
    assert ("gradient",) in variants
    attribute(exp, pictures(1, seed=70)[0], method="gradient")
    exp.close()
    assert exp._attributor._forward is None


def test_a_shape_that_cannot_be_built_takes_no_place():
    exp = onnx_lrp.Explainer(fully_convolutional(), cache_size=2)
    exp.explain(pictures(1)[0])
    with pytest.raises(onnx_lrp.OnnxLrpError):
        exp.explain(randn((1, 3, 0, 4), 1))
    with pytest.raises(onnx_lrp.OnnxLrpError):
        exp.graph((3, 1, 1, 1, 1))  # wrong rank: probing fails
    assert len(exp.sessions) == 1


@pytest.mark.parametrize("size", [0, -1, 2.5, "8", True])
def test_cache_size_must_be_a_positive_int_or_none(size):
    with pytest.raises(onnx_lrp.InvalidInput, match="cache_size"):
        onnx_lrp.Explainer(fully_convolutional(), cache_size=size)


def test_default_and_unbounded():
    assert onnx_lrp.Explainer(fully_convolutional()).sessions.size == DEFAULT_CACHE_SIZE == 8
    exp = onnx_lrp.Explainer(fully_convolutional(), cache_size=None)
    for x in pictures(10):
        exp.explain(x)
    assert len(exp.sessions) == 10 and exp.sessions.evictions == 0
