"""Command-line options for any graph: --input, --feed, --output and the --target forms."""
from __future__ import annotations

import json

import numpy as np
import onnx

from onnx_lrp import cli
from test_several_inputs import _embedding_model
from test_targets import _sequence


def _main(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_integer_input_with_a_fed_mask(capsys, tmp_path):
    onnx.save(_embedding_model(mask=True), str(tmp_path / "emb.onnx"))
    np.save(tmp_path / "ids.npy", np.array([[1, 5, 5, 2], [0, 9, 3, 3]]))
    np.save(tmp_path / "mask.npy", np.array([[1, 1, 1, 0], [1, 1, 0, 0]]))
    code, out, err = _main(capsys, tmp_path / "emb.onnx", tmp_path / "ids.npy", "--input", "input_ids",
                           "--target", "1", "--out", tmp_path / "out", "--json")
    assert code == 1 and "attention_mask" in err and "--feed" in err
    code, out, err = _main(capsys, tmp_path / "emb.onnx", tmp_path / "ids.npy", "--feed",
                           f"attention_mask={tmp_path / 'mask.npy'}", "--target", "1", "--out", tmp_path / "out")
    assert code == 0, err
    relevance = np.load(tmp_path / "out" / "ids_0.relevance.npy")
    assert relevance.shape == (1, 4, 4)  # the embedding output of one sample: (1, T, H)
    assert (relevance[0, 3] == 0).all()  # masked token
    summary = json.loads((tmp_path / "out" / "ids_0.json").read_text())
    assert abs(summary["conservation"] - 1) < 1e-4


def test_tuple_and_weight_targets_and_an_inner_output(capsys, tmp_path):
    onnx.save(_sequence("sigmoid"), str(tmp_path / "seq.onnx"))
    x = np.random.default_rng(0).standard_normal((1, 5, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    weights = np.zeros((5, 3), np.float32)
    weights[3, 1] = 1.0
    np.save(tmp_path / "w.npy", weights)
    results = {}
    for name, target in (("tuple", "3,1"), ("weights", str(tmp_path / "w.npy"))):
        code, out, err = _main(capsys, tmp_path / "seq.onnx", tmp_path / "x.npy", "--target", target,
                               "--output", "scores", "--out", tmp_path / name, "--quiet")
        assert code == 0, err
        results[name] = np.load(tmp_path / name / "x.relevance.npy")
    np.testing.assert_allclose(results["tuple"], results["weights"], rtol=1e-6, atol=1e-7)
    code, out, err = _main(capsys, tmp_path / "seq.onnx", tmp_path / "x.npy", "--feed", "nonsense")
    assert code == 2 and "NAME=FILE.npy" in err
