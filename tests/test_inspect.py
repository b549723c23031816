"""``onnx-lrp inspect``: the node listing, before anything is explained."""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnx_lrp import cli
from onnx_lrp.inspection import inspect_model

ROOT = pathlib.Path(__file__).resolve().parents[1]
TEXT_DIRECTION = str(ROOT / "models" / "text_direction.onnx")


def _model_with_unsupported_op(path):
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Hardmax", ["c"], ["h"], name="odd", axis=1),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Mul", ["r", "h"], ["m"], name="product"),
             helper.make_node("GlobalAveragePool", ["m"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["logits"], name="flat")]
    graph = helper.make_graph(nodes, "odd", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 4, 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
                              [numpy_helper.from_array(rng.standard_normal((3, 2, 3, 3)).astype(np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


def test_text_direction_listing():
    listing = inspect_model(TEXT_DIRECTION)
    assert listing.ok and listing.input_shape == (1, 3, 48, 192), "the onnx_lrp.preprocess size fills H and W"
    rows = {r.name: r for r in listing.rows}
    gates = [r for r in listing.rows if r.category == "gate"]
    assert len(gates) == 9 and all(r.rule == "Pass()" and r.status == "ok" for r in gates)
    assert sum(r.category == "activation" and r.op_type == "Mul" for r in listing.rows) == 18
    # the squeeze-excitation branch behind each gate gets no relevance under Pass
    assert rows["HardSigmoid@0"].status == "no relevance" and rows["GlobalAveragePool@0"].status == "no relevance"
    assert any(r.status == "shape only" for r in listing.rows), "the Shape/Cast/Slice flatten arithmetic"
    assert rows["Conv@0"].rule.startswith("Flat") and rows["Conv@1"].rule.startswith("ZPlus")
    text = listing.format()
    assert "Mul@1" in text and "gate" in text and "Softmax was removed" in text


def test_listing_marks_unsupported_nodes_with_the_reason(tmp_path):
    listing = inspect_model(_model_with_unsupported_op(tmp_path / "odd.onnx"), input_shape=(2, 4, 4))
    rows = {r.name: r for r in listing.rows}
    assert rows["odd"].status == "unsupported" and "no handler" in rows["odd"].reason
    assert rows["product"].category == "gate" or rows["product"].status == "needs rule"
    assert not listing.ok
    assert "'odd': onnx_lrp.rules.Pass()" in listing.override_hint()
    assert "onnx_lrp.Explainer(model, name_map=" in listing.format()


def test_cli_inspect_exit_codes_and_json(tmp_path, capsys):
    assert cli.main(["inspect", TEXT_DIRECTION, "--composite", "epsilon_gamma_box", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] and data["composite"] == "epsilon_gamma_box"
    assert any(n["rule"].startswith("ZBox") for n in data["nodes"])
    assert cli.main(["inspect", _model_with_unsupported_op(tmp_path / "odd.onnx"), "--input-shape", "2,4,4"]) == 1
    out = capsys.readouterr().out
    assert "unsupported" in out and "'odd'" in out
    assert cli.main(["inspect", TEXT_DIRECTION, "--input-shape", "3,a"]) == 2


def test_python_dash_m_runs_the_listing():
    done = subprocess.run([sys.executable, "-m", "onnx_lrp", "inspect", str(ROOT / "models" / "digits_mlp.onnx")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "MatMul" in done.stdout and "dense" in done.stdout


def test_cli_inspect_takes_explains_overrides_and_bounds(capsys):
    from onnx_lrp import inputs, metadata
    from onnx_lrp.rules import ZBox

    proto = metadata.read_model_proto(TEXT_DIRECTION)
    pre = inputs.resolve(metadata.from_proto(proto).preprocess, inputs.ModelInput.from_proto(proto))
    expected = repr(ZBox(**pre.box_bounds()))  # what explain gives the first layer
    assert cli.main(["inspect", TEXT_DIRECTION, "--composite", "epsilon_gamma_box", "--json"]) == 0
    nodes = json.loads(capsys.readouterr().out)["nodes"]
    assert [n["rule"] for n in nodes if n["rule"] and n["rule"].startswith("ZBox")] == [expected]
    first = next(n for n in nodes if n["rule"] == expected)["name"]
    assert cli.main(["inspect", TEXT_DIRECTION, "--composite", "epsilon_gamma_box", "--low", "0", "--high", "1",
                     "--rule", f"{first}=Epsilon(0.5)", "--op-rule", "Relu=Pass", "--json"]) == 0
    nodes = {n["name"]: n for n in json.loads(capsys.readouterr().out)["nodes"]}
    assert nodes[first]["rule"] == "Epsilon(epsilon=0.5)" and nodes[first]["status"] == "overridden"
    assert cli.main(["inspect", TEXT_DIRECTION, "--rule", f"{first}x=Pass"]) == 2
    assert f"did you mean {first!r}" in capsys.readouterr().err
