"""The option groups the subcommands share parse alike in every subcommand that has them."""
from __future__ import annotations

import importlib
import json
import pathlib

import pytest

from onnx_lrp import cli, rules
from onnx_lrp.commands import options

#: a shared flag -> command-line words and the parsed attribute values they must give
SHARED = {
    "--composite": (["--composite", "epsilon_gamma_box"], {"composite": "epsilon_gamma_box"}),
    "--low": (["--low", "0", "0.5", "1"], {"low": [0.0, 0.5, 1.0]}),
    "--high": (["--high", "2"], {"high": [2.0]}),
    "--rule": (["--rule", "a=Pass", "--rule", "b=Epsilon(0.5)"],
               {"rule": [("a", rules.Pass()), ("b", rules.Epsilon(0.5))]}),
    "--op-rule": (["--op-rule", "MaxPool=Norm"], {"op_rule": [("MaxPool", rules.Norm())]}),
    "--target": (["--target", "tiger cat"], {"target": "tiger cat"}),
    "--providers": (["--providers", "cuda,cpu"], {"providers": "cuda,cpu"}),
    "--json": (["--json"], {"json": True}),
    "--quiet": (["-q"], {"quiet": True}),
    "--out": (["--out", "somewhere"], {"out": "somewhere"}),
}
#: positional arguments each command needs
POSITIONAL = {"explain": ["m.onnx", "x.npy"], "evaluate": ["m.onnx", "x.npy"], "inspect": ["m.onnx"]}
#: the shared flags every command must have (--target and --out only where something is explained / written)
REQUIRED = {"--composite", "--low", "--high", "--rule", "--op-rule", "--providers", "--json", "--quiet"}


def _parser(name):
    return cli.build_parser(importlib.import_module(cli.SUBCOMMANDS[name]), f"onnx-lrp {name}")


def _action(parser, flag):
    return next((a for a in parser._actions if flag in a.option_strings), None)


def test_subcommands_are_found_in_the_commands_package():
    assert list(cli.SUBCOMMANDS)[0] == "explain"
    assert set(cli.SUBCOMMANDS) == set(POSITIONAL)


@pytest.mark.parametrize("name", sorted(POSITIONAL))
@pytest.mark.parametrize("flag", sorted(SHARED))
def test_shared_flag_parses_alike(name, flag):
    parser = _parser(name)
    action = _action(parser, flag)
    if action is None:
        assert flag not in REQUIRED, f"onnx-lrp {name} lacks the shared flag {flag}"
        pytest.skip(f"onnx-lrp {name} has no {flag}")
    words, expected = SHARED[flag]
    args = parser.parse_args(POSITIONAL[name] + words)
    assert {k: getattr(args, k) for k in expected} == expected
    reference = _action(_parser("explain"), flag)
    # every default is shared, but --out's: explain always writes files (to lrp-out), evaluate only when asked
    same = ("option_strings", "nargs", "choices", "metavar", "const") + (("default",) if flag != "--out" else ())
    assert {k: getattr(action, k) for k in same} == {k: getattr(reference, k) for k in same}, flag
    assert getattr(action.type, "__qualname__", action.type) == getattr(reference.type, "__qualname__", reference.type)


@pytest.mark.parametrize("name", sorted(POSITIONAL))
def test_values_resolve_alike(name):
    args = _parser(name).parse_args(POSITIONAL[name] + ["--providers", "cuda, CPU", "--composite", "nonsense"][:2])
    assert options.providers(args) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(cli.UsageError, match="invalid choice: 'nonsense'"):
        _parser(name).parse_args(POSITIONAL[name] + ["--composite", "nonsense"])


@pytest.mark.parametrize("name", sorted(POSITIONAL))
def test_bad_shared_values_exit_2_in_every_command(name, capsys):
    for words in (["--composite", "nonsense"], ["--low", "x"], ["--rule", "a=Bogus"]):
        assert cli.main([name, *POSITIONAL[name], *words]) == 2, words
        err = capsys.readouterr().err
        assert err.startswith("onnx-lrp: error:") and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("name", sorted(POSITIONAL))
def test_each_command_reads_the_model_file_once(name, tmp_path, monkeypatch, capsys):
    import onnx

    from onnx_lrp import graph

    models = pathlib.Path(__file__).resolve().parents[1] / "models"
    loads = []
    real = onnx.load
    monkeypatch.setattr(graph.onnx, "load", lambda *a, **k: loads.append(a[0]) or real(*a, **k))
    args = {"explain": [str(models / "digits_mlp.onnx"), str(models / "samples" / "digit.npy"), "--out",
                        str(tmp_path)],
            "evaluate": [str(models / "digits_mlp.onnx"), str(models / "samples" / "digit.npy"), "--methods", "lrp",
                         "--metrics", "region_perturbation", "--steps", "2"],
            "inspect": [str(models / "digits_mlp.onnx")]}[name]
    assert cli.main([name, *args, "--composite", "epsilon_gamma_box", "--low", "0", "--high", "1", "-q"]) == 0
    assert len(loads) == 1, loads


def test_evaluate_epsilon_gamma_box_takes_default_bounds_from_the_preprocessing(capsys):
    models = pathlib.Path(__file__).resolve().parents[1] / "models"
    args = ["evaluate", str(models / "cifar10_cnn.onnx"), str(models / "samples" / "cat_cifar10.npy"),
            "--composite", "epsilon_gamma_box", "--methods", "lrp", "--metrics", "region_perturbation",
            "--steps", "2", "--json"]
    assert cli.main(args) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["samples"] == 1
