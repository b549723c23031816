"""Load, canonization and compile do work linear in the graph size.

Timed assertions are flaky on shared machines, so the work is counted instead: the Python lines
onnx-lrp executes (``sys.settrace`` line events in the package's own files) for a chain of ``n``
nodes and of ``4n`` nodes. Linear code executes about 4× the lines; the per-node graph rescans
this replaced executed 9 to 13× (a quadratic term dominates already at these sizes), so the
count is a deterministic guard against quadratic regressions in any pass. Work done inside
C extensions (protobuf, onnx, numpy) is not counted. Wall-clock numbers for 1,000 to 10,000
nodes come from ``tools/bench_compile.py``.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest
from chain_models import KINDS, chain
from model_builders import run

import onnx_lrp
from onnx_lrp import composites
from onnx_lrp.canonize import canonize
from onnx_lrp.compile import compile_explainer
from onnx_lrp.explainer import Explainer
from onnx_lrp.graph import ModelGraph, load_detached
from onnx_lrp.probe import probe

_PACKAGE = os.path.dirname(onnx_lrp.__file__)
SMALL, FACTOR = 40, 4


def _compile(model) -> None:
    proto, label, _store = load_detached(model)
    canon = canonize(proto, "y")
    shape = tuple(d.dim_value for d in canon.model.graph.input[0].type.tensor_type.shape.dim)
    shapes, dtypes = probe(canon.model, {"x": np.zeros(shape, np.float32)}, label)
    graph = ModelGraph.build(canon.model, label, "x", canon.output, shapes, dtypes)
    compile_explainer(graph, composites.get("epsilon_plus_flat"))


def _lines_executed(fn, *args) -> int:
    count = 0

    def in_frame(frame, event, arg):
        nonlocal count
        count += event == "line"
        return in_frame

    def on_call(frame, event, arg):
        return in_frame if frame.f_code.co_filename.startswith(_PACKAGE) else None

    previous = sys.gettrace()
    sys.settrace(on_call)
    try:
        fn(*args)
    finally:
        sys.settrace(previous)
    return count


@pytest.mark.parametrize("kind", KINDS)
def test_compile_work_grows_linearly_with_the_chain_length(kind):
    small = _lines_executed(_compile, chain(kind, SMALL))
    large = _lines_executed(_compile, chain(kind, FACTOR * SMALL))
    assert large / small < 1.15 * FACTOR, (f"{kind}: {FACTOR}x the nodes executed {large / small:.1f}x the lines "
                                           f"({small} -> {large}); some step is quadratic in the graph size")


#: Chains without biases: LRP-0 conserves their relevance up to float rounding.
_NO_BIAS = ("mul_const", "dropout", "identity", "relu", "conv_mul")


@pytest.mark.parametrize("kind", KINDS)
def test_a_long_chain_is_explained_correctly(kind):
    """The canonized 200-node chain still computes the model (the explained output equals
    onnxruntime's on the original) and the explanation is finite, conserving where nothing adds a bias."""
    model = chain(kind, 200)
    explainer = Explainer(model, composite="epsilon", epsilon=0.0)  # LRP-0
    x = np.random.default_rng(1).standard_normal([1] + explainer.input_shape[1:]).astype(np.float32)
    result = explainer.explain(x)
    np.testing.assert_allclose(result.output, run(model, {"x": x})["y"], rtol=1e-4, atol=1e-5)
    assert np.all(np.isfinite(result.relevance))
    if kind in _NO_BIAS:
        np.testing.assert_allclose(result.conservation(), 1.0, rtol=1e-4)
