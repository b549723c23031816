"""Rules written on the command line (--rule NODE=RULE, --op-rule OPTYPE=RULE)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper, save

from onnx_lrp import CompositeError, cli, rules
from onnx_lrp.rule_spec import parse_assignments, parse_rule


@pytest.mark.parametrize("text, cls, attrs", [
    ("Pass", rules.Pass, {}), ("epsilon(0.25)", rules.Epsilon, {"epsilon": 0.25}),
    ("AlphaBeta(1, 0)", rules.AlphaBeta, {"alpha": 1.0, "beta": 0.0}), ("Gamma()", rules.Gamma, {"gamma": 0.25}),
    (" Uniform ", rules.Uniform, {}),
])
def test_parse_rule(text, cls, attrs):
    rule = parse_rule(text)
    assert type(rule) is cls
    assert {k: getattr(rule, k) for k in attrs} == attrs


@pytest.mark.parametrize("text, message", [
    ("Bogus", "unknown rule 'Bogus'"), ("ZBox(0, 1)", "unknown rule"), ("Epsilon(x)", "rule 'Epsilon(x)'"),
    ("AlphaBeta(2, 2)", "alpha - beta = 1"),
])
def test_parse_rule_errors_name_the_problem(text, message):
    with pytest.raises(CompositeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_rule(text)


def test_parse_assignments_needs_name_and_rule():
    assert isinstance(parse_assignments(["Mul_3=Pass"], "--rule")["Mul_3"], rules.Pass)
    with pytest.raises(CompositeError, match="--rule NAME=RULE"):
        parse_assignments(["Pass"], "--rule")


def _model_with_unsupported_op(path):
    """x → Gemm → Atan (an op onnx-lrp has no handler for) → Gemm."""
    w1 = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    w2 = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w1"], ["h"], transB=1, name="dense1"),
             helper.make_node("Atan", ["h"], ["a"], name="odd"),
             helper.make_node("Gemm", ["a", "w2"], ["y"], transB=1, name="dense2")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
                              [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_cli_rule_lets_an_unsupported_node_through(tmp_path, capsys):
    model, x = tmp_path / "odd.onnx", tmp_path / "x.npy"
    _model_with_unsupported_op(model)
    np.save(x, np.ones((1, 3), np.float32))
    assert cli.main([str(model), str(x), "--out", str(tmp_path / "a"), "--quiet"]) == 1
    assert "--rule 'odd=Pass'" in capsys.readouterr().err
    assert cli.main([str(model), str(x), "--out", str(tmp_path / "b"), "--rule", "odd=Pass", "--json",
                     "--composite", "epsilon"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc  # one JSON document with the summary
    assert (tmp_path / "b" / "x.relevance.npy").exists()


def test_cli_bad_rule_is_a_usage_error(tmp_path, capsys):
    model, x = tmp_path / "odd.onnx", tmp_path / "x.npy"
    _model_with_unsupported_op(model)
    np.save(x, np.ones((1, 3), np.float32))
    assert cli.main([str(model), str(x), "--op-rule", "Atan=Nonsense", "--out", str(tmp_path / "c")]) == 2
    assert "unknown rule 'Nonsense'" in capsys.readouterr().err


def test_cli_rule_for_no_such_node_is_a_usage_error_naming_close_nodes(tmp_path, capsys):
    model, x = tmp_path / "odd.onnx", tmp_path / "x.npy"
    _model_with_unsupported_op(model)
    np.save(x, np.ones((1, 3), np.float32))
    assert cli.main([str(model), str(x), "--rule", "dense_1=Pass", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "unknown node 'dense_1' (did you mean 'dense1'" in err and len(err.strip().splitlines()) == 1
    assert cli.main([str(model), str(x), "--op-rule", "ATan=Pass", "--out", str(tmp_path / "e")]) == 2
    assert "did you mean 'Atan'" in capsys.readouterr().err
