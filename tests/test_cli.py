"""The ``onnx-lrp`` command line: every shipped model and sample, the files it writes, and its errors.

The shipped models run as a subprocess (``python -m onnx_lrp``), as a user would; the slow one
(EfficientNet-Lite0, ~1 s to compile) runs twice: once on a directory of all its samples with
``--json``, once as the README's command. Bad inputs run as subprocesses started together (each
checks the exit code and that stderr is one line naming the problem); finer behaviour calls
``cli.main(argv)`` in-process.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image

from onnx_lrp import cli, files, render
from onnx_lrp.commands import explain as explain_cmd
from onnx_lrp.commands import options
from onnx_lrp.errors import InvalidTarget, OutputError

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
SAMPLES = MODELS / "samples"
MANIFEST = json.loads((MODELS / "MANIFEST.json").read_text())
EFFNET, CIFAR, DIGITS, TEXT = (str(MODELS / f"{m}.onnx") for m in
                               ("efficientnet_lite0", "cifar10_cnn", "digits_mlp", "text_direction"))
CAT, COFFEE = MANIFEST["efficientnet_lite0"]["checks"]["cat"], MANIFEST["efficientnet_lite0"]["checks"]["coffee"]


def run_cli(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "onnx_lrp", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def run_json(*args, **kw) -> dict:
    proc = run_cli(*args, "--json", **kw)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # stdout holds exactly one JSON document


def by_name(doc: dict) -> dict:
    return {r["name"]: r for r in doc["results"]}


def check_result_files(result: dict, sample_shape, image_size=None):
    """The files of one result exist, are complete and agree with the summary."""
    files = {k: Path(v) for k, v in result["files"].items()}
    relevance = np.load(files["relevance"])
    assert relevance.shape == (1, *sample_shape) and relevance.dtype == np.float32
    assert result["relevance_sum"] == pytest.approx(float(relevance.sum(dtype=np.float64)), rel=1e-5, abs=1e-6)
    assert result["conservation"] == pytest.approx(result["relevance_sum"] / result["output"], rel=1e-6)
    assert json.loads(files["summary"].read_text()) == result
    assert isinstance(result["predicted"], int) and isinstance(result["target"], int)
    if image_size is not None:
        assert Image.open(files["overlay"]).size == image_size
    else:
        assert "overlay" not in files
    leftovers = [p.name for p in files["summary"].parent.iterdir() if p.name.startswith(".")]
    assert not leftovers, f"temporary files left behind: {leftovers}"
    return relevance, files


# --- shipped models and samples ----------------------------------------------------------------
@pytest.fixture(scope="module")
def effnet_dir_run(tmp_path_factory):
    """All EfficientNet samples (two pictures, two preprocessed arrays) in one directory, one run."""
    src = tmp_path_factory.mktemp("effnet_in")
    for name in ("cat.png", "coffee.png", "cat_efficientnet_lite0.npy", "coffee_efficientnet_lite0.npy"):
        shutil.copy(SAMPLES / name, src / name)
    out = tmp_path_factory.mktemp("effnet_out")
    return run_json(EFFNET, src, "--out", out, "--batch-size", "2"), out


@pytest.mark.parametrize("name,expected,image", [
    ("cat", CAT, True), ("cat_efficientnet_lite0", CAT, False),
    ("coffee", COFFEE, True), ("coffee_efficientnet_lite0", COFFEE, False),
])
def test_efficientnet_samples(effnet_dir_run, name, expected, image):
    doc, _ = effnet_dir_run
    result = by_name(doc)[name]
    assert doc["errors"] == [] and len(doc["results"]) == 4
    assert result["predicted"] == expected["class"] == result["target"]
    assert result["predicted_label"] == expected["label"] == result["target_label"]
    assert result["composite"] == "epsilon_plus_flat" and result["model"] == EFFNET
    _, files = check_result_files(result, (3, 224, 224), (224, 224) if image else None)
    assert Image.open(files["heatmap"]).size == (224, 224)


def test_efficientnet_picture_and_array_explain_the_same(effnet_dir_run):
    doc, _ = effnet_dir_run
    results = by_name(doc)
    for stem in ("cat", "coffee"):
        png = np.load(results[stem]["files"]["relevance"])
        npy = np.load(results[f"{stem}_efficientnet_lite0"]["files"]["relevance"])
        np.testing.assert_allclose(png, npy, rtol=1e-4, atol=1e-6 * np.abs(npy).max())


def test_cat_heatmap_sits_on_the_eyes_and_nose(effnet_dir_run):
    """The picture is a close-up of the cat's face: the positive relevance should concentrate on its
    eyes and nose (boxes in the 224x224 picture), far beyond their share of the area."""
    doc, _ = effnet_dir_run
    result = by_name(doc)["cat"]
    rmap = np.load(result["files"]["relevance"])[0].sum(axis=0)
    positive = np.clip(rmap, 0, None)
    boxes = [(55, 120, 35, 110), (65, 130, 150, 210), (150, 200, 105, 170)]  # rows, cols: eyes, nose
    mask = np.zeros_like(rmap, dtype=bool)
    for r0, r1, c0, c1 in boxes:
        mask[r0:r1, c0:c1] = True
    share = positive[mask].sum() / positive.sum()
    assert share > 2 * mask.mean(), (share, mask.mean())
    # the PNG shows the same map: its hottest pixels are where relevance is largest
    heat = np.asarray(Image.open(result["files"]["heatmap"]).convert("RGB")).astype(int).sum(axis=2)
    assert heat[rmap > np.percentile(rmap, 99.5)].mean() > heat.mean() + 100


def test_readme_command_needs_no_flags_and_names_the_class(tmp_path):
    proc = run_cli("models/efficientnet_lite0.onnx", "models/samples/cat.png", "--out", tmp_path / "lrp-out",
                   cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert CAT["label"] in proc.stdout and "relevance sum" in proc.stdout
    for suffix in (".relevance.npy", ".heatmap.png", ".overlay.png", ".json"):
        assert (tmp_path / "lrp-out" / f"cat{suffix}").is_file()
        assert f"cat{suffix}" in proc.stdout


def test_default_output_directory_is_lrp_out(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(capsys, CIFAR, SAMPLES / "cat_cifar10.npy", "--quiet") == (0, "", "")
    assert (tmp_path / "lrp-out" / "cat_cifar10.json").is_file()


def test_cifar10_cat_picture_and_array(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("cat_cifar10.png", "cat_cifar10.npy"):
        shutil.copy(SAMPLES / name, src / name)
    doc = run_json(CIFAR, src, "--out", tmp_path / "out")
    assert [r["name"] for r in doc["results"]] == ["cat_cifar10", "cat_cifar10_2"]  # .npy sorts first
    expected = MANIFEST["cifar10_cnn"]["checks"]["cat"]
    for result in doc["results"]:
        assert (result["predicted"], result["predicted_label"]) == (expected["class"], expected["label"])
        assert result["output"] == pytest.approx(expected["logit"], abs=1e-2)
    check_result_files(doc["results"][0], (3, 32, 32))
    check_result_files(doc["results"][1], (3, 32, 32), (32, 32))


def test_digits_mlp_digit(tmp_path):
    doc = run_json(DIGITS, SAMPLES / "digit.npy", "--out", tmp_path)
    (result,) = doc["results"]
    expected = MANIFEST["digits_mlp"]["checks"]["digit"]
    assert (result["predicted"], result["predicted_label"]) == (expected["class"], expected["label"])
    assert any("Softmax" in note for note in doc["notes"])
    # Flat on a dense first layer spreads relevance evenly: said so, in the summary
    assert any("the same for every input feature" in note for note in result["notes"])
    _, files = check_result_files(result, (64,))
    assert Image.open(files["heatmap"]).size == (8, 8)  # flat 64 -> 8x8 by the metadata's size


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    src = tmp_path_factory.mktemp("text_in")
    for stem in ("textline", "textline_rotated"):
        shutil.copy(SAMPLES / f"{stem}.png", src / f"{stem}.png")
        shutil.copy(SAMPLES / f"{stem}_text_direction.npy", src / f"{stem}_text_direction.npy")
    return run_cli(TEXT, src, "--out", tmp_path_factory.mktemp("text_out"), "--json")


@pytest.mark.parametrize("name,check,image", [
    ("textline", "textline", True), ("textline_text_direction", "textline", False),
    ("textline_rotated", "textline_rotated", True), ("textline_rotated_text_direction", "textline_rotated", False),
])
def test_text_direction_textlines(text_run, name, check, image):
    assert text_run.returncode == 0, text_run.stderr
    doc = json.loads(text_run.stdout)
    expected = MANIFEST["text_direction"]["checks"][check]
    result = by_name(doc)[name]
    assert len(doc["results"]) == 4
    assert (result["predicted"], result["predicted_label"]) == (expected["class"], expected["label"])
    _, files = check_result_files(result, (3, 48, 192), (192, 48) if image else None)
    assert Image.open(files["heatmap"]).size == (192, 48)


# --- bad inputs: exit code and one line naming the problem ----------------------------------------
def _bad_cases(tmp: Path) -> dict:
    (tmp / "truncated.onnx").write_bytes(Path(CIFAR).read_bytes()[:3000])
    (tmp / "notimage.png").write_text("this is not a picture")
    nan = np.load(SAMPLES / "cat_cifar10.npy")
    nan[0, 1, 2, 3] = np.nan
    np.save(tmp / "nan.npy", nan)
    np.save(tmp / "nhwc.npy", np.load(SAMPLES / "cat_cifar10.npy").transpose(0, 2, 3, 1))
    (tmp / "afile").write_text("a file where the output directory should go")
    cat = SAMPLES / "cat_cifar10.npy"
    return {
        # name: (argv, exit code, fragments the one line must contain)
        "missing model": ([tmp / "nope.onnx", cat], 1, ["nope.onnx", "does not exist"]),
        "corrupt model": ([tmp / "truncated.onnx", cat], 1, ["truncated.onnx", "cannot read", "ONNX model"]),
        "unreadable input": ([CIFAR, tmp / "notimage.png"], 1, ["notimage.png", "cannot read", "image"]),
        "missing input": ([CIFAR, tmp / "nothere.npy"], 1, ["nothere.npy", "does not exist"]),
        "wrong shape": ([CIFAR, SAMPLES / "digit.npy"], 1, ["digit.npy", "shape (1, 64)", "(N, 3, 32, 32)"]),
        "wrong layout": ([CIFAR, tmp / "nhwc.npy"], 1, ["nhwc.npy", "channels-last", "transpose"]),
        "nan": ([CIFAR, tmp / "nan.npy"], 1, ["nan.npy", "NaN"]),
        "unknown composite": ([CIFAR, cat, "--composite", "epsilonn"], 2, ["--composite", "'epsilonn'",
                                                                            "epsilon_plus_flat"]),
        "unknown label": ([CIFAR, cat, "--target", "dgo"], 1, ["--target 'dgo'", "not a label", "'dog'"]),
        "target out of range": ([CIFAR, cat, "--target", "10"], 1, ["--target 10", "out of range", "0..9"]),
        "labels file missing": ([CIFAR, cat, "--labels", tmp / "none.txt"], 1, ["none.txt", "labels file"]),
        "unwritable out": ([CIFAR, cat, "--out", tmp / "afile" / "sub"], 1, ["afile", "output directory",
                                                                              "--out"]),
        "unknown option": ([CIFAR, cat, "--colour", "red"], 2, ["--colour"]),
        "no arguments": ([], 2, ["usage", "MODEL INPUT"]),
    }


# the bad inputs the command must report; run as subprocesses (the rest of the table runs in-process)
SUBPROCESS_CASES = ["missing model", "corrupt model", "unreadable input", "wrong shape", "wrong layout", "nan",
                    "unknown composite", "unknown label", "target out of range", "unwritable out"]
IN_PROCESS_CASES = ["missing input", "labels file missing", "unknown option", "no arguments"]


def _argv(tmp: Path, case: str) -> list[str]:
    argv, _, _ = _bad_cases(tmp)[case]
    argv = [str(a) for a in argv]
    if argv and case != "unwritable out":
        argv += ["--out", str(tmp / "out")]
    return argv


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory):
    """The subprocess cases, a few at a time (they are independent)."""
    tmp = tmp_path_factory.mktemp("bad")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    results, cases = {}, list(SUBPROCESS_CASES)
    while cases:
        batch, cases = cases[:4], cases[4:]
        procs = {case: subprocess.Popen([sys.executable, "-m", "onnx_lrp", *_argv(tmp, case)], cwd=tmp, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for case in batch}
        for case, proc in procs.items():
            out, err = proc.communicate(timeout=300)
            results[case] = (proc.returncode, out, err)
    return tmp, results


def _check_one_line(case: str, tmp: Path, rc: int, stdout: str, stderr: str) -> None:
    _, code, fragments = _bad_cases(tmp)[case]
    assert rc == code, stderr
    assert stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("onnx-lrp: error: ") and "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.parametrize("case", SUBPROCESS_CASES)
def test_bad_input_exits_with_one_line(bad_runs, case):
    tmp, results = bad_runs
    _check_one_line(case, tmp, *results[case])


@pytest.mark.parametrize("case", IN_PROCESS_CASES)
def test_bad_arguments_exit_with_one_line(capsys, tmp_path, case):
    code = cli.main(_argv(tmp_path, case))
    captured = capsys.readouterr()
    _check_one_line(case, tmp_path, code, captured.out, captured.err)


def test_no_partial_outputs_after_a_failure(bad_runs):
    tmp, _ = bad_runs
    out = tmp / "out"
    assert not out.exists() or not any(out.iterdir())


# --- in-process: options and behaviour ---------------------------------------------------------
def main(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_shows_an_example_and_the_commands(capsys):
    code, out, _ = main(capsys, "--help")
    assert code == 0
    assert "usage: onnx-lrp MODEL INPUT [options]" in out
    assert "onnx-lrp models/efficientnet_lite0.onnx models/samples/cat.png" in out
    assert "explain" in out and "--composite" in out and "exit codes" in out
    code, out, _ = main(capsys, "explain", "--help")
    assert code == 0 and "usage: onnx-lrp explain MODEL INPUT" in out


def test_help_through_python_m_and_version(capsys):
    proc = run_cli("--help")
    assert proc.returncode == 0 and "examples:" in proc.stdout and proc.stderr == ""
    code, out, _ = main(capsys, "--version")
    assert code == 0 and out.startswith("onnx-lrp ")


def test_explicit_explain_subcommand_and_target_by_label(capsys, tmp_path):
    code, out, err = main(capsys, "explain", CIFAR, SAMPLES / "cat_cifar10.npy", "--target", "dog", "--out", tmp_path)
    assert code == 0, err
    assert "cat (class 3" in out and "explaining dog (class 5" in out
    summary = json.loads((tmp_path / "cat_cifar10.json").read_text())
    assert (summary["predicted"], summary["target"], summary["target_label"]) == (3, 5, "dog")


@pytest.mark.parametrize("target,expected", [("pred", 3), ("7", 7), ("Horse", 7), ("truck", 9)])
def test_target_forms(capsys, tmp_path, target, expected):
    code, out, err = main(capsys, CIFAR, SAMPLES / "cat_cifar10.npy", "--target", target, "--out", tmp_path, "--json")
    assert code == 0, err
    assert json.loads(out)["results"][0]["target"] == expected


def test_target_label_wins_over_an_index_with_the_same_text():
    assert options.resolve_target("180", ["0", "180"], "m") == 1
    assert options.resolve_target("1", ["0", "180"], "m") == 1
    assert options.resolve_target("pred", None, "m") is None
    with pytest.raises(InvalidTarget, match="no labels"):
        options.resolve_target("cat", None, "m")


def test_labels_file_overrides_metadata(capsys, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"class-{i}" for i in range(10)))
    code, out, err = main(capsys, CIFAR, SAMPLES / "cat_cifar10.npy", "--labels", labels, "--target", "class-4",
                          "--out", tmp_path / "o", "--json")
    assert code == 0, err
    result = json.loads(out)["results"][0]
    assert (result["predicted_label"], result["target"]) == ("class-3", 4)


def test_epsilon_gamma_box_bounds_from_metadata_or_flags(capsys, tmp_path):
    def relevance(*flags):
        out = tmp_path / str(len(list(tmp_path.iterdir())))
        code, _, err = main(capsys, CIFAR, SAMPLES / "cat_cifar10.png", "--composite", "epsilon_gamma_box",
                            *flags, "--out", out, "--quiet")
        assert code == 0, err
        return np.load(out / "cat_cifar10.relevance.npy")

    derived = relevance()  # cifar10's metadata: raw pixels, so low 0 and high 255
    np.testing.assert_array_equal(relevance("--low", "0", "--high", "255"), derived)
    per_channel = relevance("--low", "0", "0", "0", "--high", "255", "100", "255")
    assert np.abs(per_channel - derived).max() > 1e-3 * np.abs(derived).max()



def test_epsilon_gamma_box_without_metadata_asks_for_bounds(capsys, tmp_path):
    model = onnx.load(DIGITS)
    del model.metadata_props[:]
    path = tmp_path / "bare.onnx"
    onnx.save(model, path)
    code, _, err = main(capsys, path, SAMPLES / "digit.npy", "--composite", "epsilon_gamma_box", "--out", tmp_path)
    assert code == 2 and "--low and --high" in err and "bare.onnx" in err
    code, _, err = main(capsys, path, SAMPLES / "digit.npy", "--composite", "epsilon_gamma_box", "--low", "0",
                        "--high", "1", "--out", tmp_path, "--quiet")
    assert code == 0, err


def test_batch_npy_npz_and_batch_size(capsys, tmp_path):
    cat = np.load(SAMPLES / "cat_cifar10.npy")
    batch = np.concatenate([cat, cat[:, :, ::-1], cat * 0.5])
    np.save(tmp_path / "three.npy", batch)
    np.savez(tmp_path / "arrays.npz", a=batch[:2], b=batch[2])
    code, out, err = main(capsys, CIFAR, tmp_path / "three.npy", "--batch-size", "2", "--out", tmp_path / "o",
                          "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert [r["name"] for r in doc["results"]] == ["three_0", "three_1", "three_2"]
    assert [r["index"] for r in doc["results"]] == [0, 1, 2]
    assert [r["timings_s"]["batch"] for r in doc["results"]] == [2, 2, 1]
    code, out, err = main(capsys, CIFAR, tmp_path / "arrays.npz", "--out", tmp_path / "o", "--json")
    assert code == 0, err
    assert [r["name"] for r in json.loads(out)["results"]] == ["arrays_a_0", "arrays_a_1", "arrays_b"]
    code, out, err = main(capsys, CIFAR, tmp_path / "arrays.npz", "--key", "b", "--out", tmp_path / "o", "--json")
    assert code == 0 and [r["name"] for r in json.loads(out)["results"]] == ["arrays_b"]


def test_directory_with_a_bad_file_explains_the_rest_and_fails(capsys, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(SAMPLES / "cat_cifar10.png", src / "a.png")
    (src / "b.png").write_text("broken")
    shutil.copy(SAMPLES / "cat_cifar10.npy", src / "c.npy")
    (src / "notes.txt").write_text("ignored")
    code, out, err = main(capsys, CIFAR, src, "--out", tmp_path / "out", "--json")
    assert code == 1
    doc = json.loads(out)
    assert [r["name"] for r in doc["results"]] == ["a", "c"]
    assert len(doc["errors"]) == 1 and "b.png" in doc["errors"][0]["error"]
    assert "b.png" in err and "1 of 3 inputs failed" in err
    code, out, err = main(capsys, CIFAR, src, "--out", tmp_path / "out2")
    assert "skipped 1 files" in out and "explained 2 inputs" in out


def test_nan_sample_in_a_batch_fails_alone(capsys, tmp_path):
    batch = np.concatenate([np.load(SAMPLES / "cat_cifar10.npy")] * 3)
    batch[1, 0, 0, 0] = np.inf
    np.save(tmp_path / "b.npy", batch)
    code, out, err = main(capsys, CIFAR, tmp_path / "b.npy", "--out", tmp_path / "o", "--json")
    assert code == 1
    doc = json.loads(out)
    assert [r["name"] for r in doc["results"]] == ["b_0", "b_2"]
    assert "b.npy[1]" in doc["errors"][0]["error"] and "NaN/Inf" in doc["errors"][0]["error"]


def test_keep_layers_and_save_explainer(capsys, tmp_path):
    saved = tmp_path / "explainer.onnx"
    code, out, err = main(capsys, CIFAR, SAMPLES / "cat_cifar10.npy", "--keep-layers", "--save-explainer", saved,
                          "--out", tmp_path, "--json")
    assert code == 0, err
    result = json.loads(out)["results"][0]
    layers = np.load(result["files"]["layers"])
    relevance = np.load(result["files"]["relevance"])
    np.testing.assert_array_equal(layers["input"], relevance)
    assert len(layers.files) > 10
    session = ort.InferenceSession(str(saved), providers=["CPUExecutionProvider"])
    x = np.load(SAMPLES / "cat_cifar10.npy")
    standalone = session.run(["relevance"], {"input": x, "target": np.array([-1], np.int64)})[0]
    np.testing.assert_allclose(standalone, relevance, rtol=1e-5, atol=1e-6)


def test_save_explainer_into_a_missing_directory(capsys, tmp_path):
    code, _, err = main(capsys, CIFAR, SAMPLES / "cat_cifar10.npy", "--save-explainer", tmp_path / "no" / "e.onnx",
                        "--out", tmp_path)
    assert code == 1 and "--save-explainer" in err


def test_quiet_and_cmap(capsys, tmp_path):
    code, out, err = main(capsys, CIFAR, SAMPLES / "cat_cifar10.png", "--quiet", "--cmap", "bwr", "--out", tmp_path)
    assert (code, out, err) == (0, "", "")
    heat = np.asarray(Image.open(tmp_path / "cat_cifar10.heatmap.png"))
    rel = np.load(tmp_path / "cat_cifar10.relevance.npy")[0].sum(axis=0)
    # bwr: white at zero, red for the most positive pixel
    assert tuple(heat[np.unravel_index(rel.argmax(), rel.shape)]) == (255, 0, 0)


def test_unknown_cmap_and_bad_numbers_are_usage_errors(capsys):
    assert main(capsys, CIFAR, "x.npy", "--cmap", "rainbow")[0] == 2
    assert main(capsys, CIFAR, "x.npy", "--batch-size", "0")[0] == 2
    code, _, err = main(capsys, CIFAR, "x.npy", "--scale", "0")
    assert code == 2 and "--scale" in err


def test_provider_aliases():
    assert options.providers(types.SimpleNamespace(providers="cpu, CUDA")) == ["CPUExecutionProvider",
                                                                                "CUDAExecutionProvider"]
    assert options.providers(types.SimpleNamespace(providers=None)) is None


# --- the subcommand registry -------------------------------------------------------------------
def test_a_new_subcommand_is_one_module_and_one_line(capsys, monkeypatch):
    calls = []
    module = types.ModuleType("fake_inspect")
    module.HELP = "print what a model holds"
    module.add_arguments = lambda parser: parser.add_argument("model")
    module.run = lambda args: calls.append(args.model) or 0
    monkeypatch.setitem(sys.modules, "fake_inspect", module)
    monkeypatch.setitem(cli.SUBCOMMANDS, "inspect", "fake_inspect")
    assert main(capsys, "inspect", "m.onnx")[0] == 0 and calls == ["m.onnx"]
    code, out, _ = main(capsys, "--help")
    assert code == 0 and "inspect" in out and "print what a model holds" in out
    code, out, _ = main(capsys, "inspect", "--help")
    assert code == 0 and "usage: onnx-lrp inspect" in out


def test_internal_errors_are_one_line(capsys, monkeypatch):
    def boom(args):
        raise RuntimeError("something broke")
    monkeypatch.setattr(explain_cmd, "run", boom)
    monkeypatch.delenv(cli.TRACEBACK_ENV, raising=False)
    code, _, err = main(capsys, CIFAR, "x.npy")
    assert code == 1 and err.count("\n") == 1 and "internal error (RuntimeError: something broke)" in err


# --- atomic writes -----------------------------------------------------------------------------
def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "r.json"
    render.save_json(target, {"a": 1})

    def fail(handle):
        handle.write(b"{\"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match="No space left"):
        files.write_atomic(target, fail)
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_out_dir_checks(tmp_path):
    assert render.prepare_out_dir(tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="--out"):
        render.prepare_out_dir(tmp_path / "file")


# --- the README and CI agree -------------------------------------------------------------------
def test_readme_commands_and_ci_script():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    install = ("python3 -m venv .venv && .venv/bin/pip install -e . && "
               ".venv/bin/onnx-lrp models/efficientnet_lite0.onnx models/samples/cat.png")
    tests = ".venv/bin/pip install -e '.[test]' && .venv/bin/python -m pytest -q"
    assert install in readme and tests in readme
    assert ".venv/bin/python -m pytest -q\n" in ci and "python3 -m venv .venv" in ci
    assert "## Performance" in readme


# --- progress bar ------------------------------------------------------------------------------
def test_progress_bar_draws_and_clears_around_lines():
    import io

    from onnx_lrp.progress import Progress

    stream = io.StringIO()
    bar = Progress(4, enabled=True, stream=stream)
    bar.advance(1, "a.png")
    bar.write("a line")
    bar.advance(3, "d.png")
    bar.close()
    text = stream.getvalue()
    assert "1/4 files" in text and "4/4 files" in text and "a.png" in text
    assert "\na line\n" in text.replace("\r", "\n") and text.endswith("\r")
    assert Progress(5, stream=io.StringIO()).enabled is False  # not a terminal: no bar
