#!/usr/bin/env python
"""Print the "any graph" table: each graph feature × exporter, whether it is explained, and the
LRP-0 conservation error max |Σ relevance / explained output − 1| over a batch.

The graphs are the ones the tests build (tests/test_shape_subgraphs.py, test_several_inputs.py,
test_targets.py) and the torch fixtures (tools/make_shape_fixtures.py); no biases anywhere, so
LRP-0 conserves exactly where the rules do::

    PYTHONPATH=$PWD:$PWD/tests python tools/anygraph_report.py
"""
from __future__ import annotations

import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import onnx_lrp  # noqa: E402
import test_graph  # noqa: E402
import test_several_inputs as several  # noqa: E402
import test_shape_subgraphs as shapes  # noqa: E402
import test_targets as targets  # noqa: E402
from family_helpers import lrp0_composite  # noqa: E402
from model_builders import randn  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "exporters"


def case(model, x, **kwargs):
    explain = {k: kwargs.pop(k) for k in ("target", "feeds") if k in kwargs}
    return onnx_lrp.Explainer(model, composite=lrp0_composite(), **kwargs).explain(x, **explain)


def cases():
    ids = np.array([[1, 5, 5, 2], [0, 9, 3, 3]])
    mask = np.zeros((3, 4, 4), np.float32)
    mask[1, 1:3, 1:3] = 1
    yield "chunk: Slice bounds from Shape", "onnx.helper", lambda: case(shapes._chunk_model(True), randn((3, 4, 3)))
    for exporter in ("torchscript", "dynamo"):
        for name, what in (("shuffle_chunk", "ShuffleNetV2 chunk + channel shuffle"),
                           ("tiny_vit", "class token + position embedding")):
            yield what, f"torch {exporter}", lambda n=name, e=exporter: case(
                FIXTURES / f"{n}_{e}.onnx", randn((3, 3, 8, 8)))
    yield "class token expanded to the batch (Shape)", "onnx.helper", lambda: case(
        shapes._class_token_model(), randn((2, 5, 4)), target=0)
    yield "two inputs, both explained", "onnx.helper", lambda: case(
        several._two_inputs(), {"x": randn((3, 4)), "aux": randn((3, 3), 2)}, input_name=["x", "aux"])
    yield "two inputs, one fed", "onnx.helper", lambda: case(
        several._two_inputs(), randn((3, 4)), input_name="x", feeds={"aux": randn((3, 3), 2)})
    yield "token ids → embedding Gather", "onnx.helper", lambda: case(several._embedding_model(), ids, target=2)
    yield "token ids + attention mask feed", "onnx.helper", lambda: case(
        several._embedding_model(mask=True), ids, feeds={"attention_mask": (ids > 2).astype(np.int64)})
    yield "dense map, mask target", "onnx.helper", lambda: case(targets._dense_map(), randn((2, 2, 4, 4)),
                                                                 target=mask)
    yield "sequence output, (t, c) target", "onnx.helper", lambda: case(targets._sequence(), randn((2, 5, 4)),
                                                                         target=(3, 2))
    for squash in ("sigmoid", "softmax_moved", "written"):
        yield f"trailing squasher stripped ({squash})", "onnx.helper", lambda s=squash: case(
            targets._sequence(s), randn((2, 5, 4)), target=(1, 3) if s == "softmax_moved" else (3, 1))
    yield "no batch axis (batch_axis=None)", "onnx.helper", lambda: case(
        _unbatched(), randn((6, 4)), batch_axis=None, target=2)
    yield "If with a known condition", "onnx.helper", lambda: case(test_graph._if_model(False), randn((2, 3)))
    yield "If on the data", "onnx.helper", lambda: case(test_graph._if_model(True), randn((2, 3)))


def _unbatched():
    import onnx
    from onnx import helper
    from model_builders import make_model, vi
    w = np.random.default_rng(9).standard_normal((4, 3)).astype(np.float32)
    return make_model([helper.make_node("ReduceMean", ["x"], ["m"], axes=[0], keepdims=0),
                       helper.make_node("MatMul", ["m", "w"], ["y"])],
                      [vi("x", ["T", 4])], [vi("y", [3])], {"w": w})


def main():
    print("| feature | exporter | explained | LRP-0 conservation error |")
    print("|---|---|---|---|")
    for feature, exporter, run in cases():
        try:
            res = run()
            out = res.target_output
            error = f"{np.max(np.abs(res.conservation() - 1)):.1e}" if np.all(np.abs(out) > 1e-6) else \
                "n/a (output 0)"
            print(f"| {feature} | {exporter} | yes | {error} |")
        except onnx_lrp.OnnxLrpError as exc:
            print(f"| {feature} | {exporter} | no: {type(exc).__name__} | {str(exc).split('. To proceed')[0][:90]} |")


if __name__ == "__main__":
    main()
