"""``onnx-lrp evaluate`` (onnx_lrp.evaluation, onnx_lrp.commands.evaluate): the gate, the reports, mask lookup and streaming."""
from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import onnx
import pytest
from PIL import Image

from eval_models import orthogonal_mlp, region_reader, sign_flip_reader
from onnx_lrp.errors import InvalidInput
from onnx_lrp.cli import main as cli_main
from onnx_lrp.evaluation import Gate, MaskFinder, MethodSpec, Settings, evaluate

SIZE = 16
CENTRE = np.zeros((SIZE, SIZE), bool)
CENTRE[4:12, 4:12] = True
BORDER = ~CENTRE
FAST = ["--steps", "4", "--faithfulness-runs", "4"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Models reading only the border / only the centre, 3 images in one .npy, a centre mask PNG
    drawn at 64×64 (resized to the 16×16 map on reading)."""
    root = tmp_path_factory.mktemp("evaluate")
    onnx.save(region_reader(BORDER, channels=3), root / "border.onnx")
    onnx.save(region_reader(CENTRE, channels=3), root / "centre.onnx")
    inputs = root / "inputs"
    inputs.mkdir()
    x = np.random.default_rng(0).uniform(0.5, 1.5, (3, 3, SIZE, SIZE)).astype(np.float32)
    np.save(inputs / "img.npy", x)
    masks = root / "masks"
    masks.mkdir()
    big = np.zeros((64, 64), np.uint8)
    big[16:48, 16:48] = 255
    Image.fromarray(big).save(masks / "img_mask.png")
    return root, x


def run_cli(data, model, *extra):
    root, _ = data
    return cli_main(["evaluate", str(root / model), str(root / "inputs"), "--masks", str(root / "masks"), *FAST, *extra])


# --- the gate (done-when) -------------------------------------------------------------------

def test_border_reader_fails_a_centre_mass_gate_and_centre_reader_passes(data, capsys):
    root, _ = data
    gate = ["--methods", "lrp", "--metrics", "relevance_mass_accuracy", "pointing_game",
            "--fail-under", "relevance_mass_accuracy=0.5"]
    assert run_cli(data, "border.onnx", *gate, "--out", str(root / "border")) == 1
    out = capsys.readouterr().out
    assert "FAIL fail-under relevance_mass_accuracy=0.5 [lrp]: 0.0000" in out
    assert run_cli(data, "centre.onnx", *gate, "--out", str(root / "centre")) == 0
    assert "PASS fail-under relevance_mass_accuracy=0.5 [lrp]: 1.0000" in capsys.readouterr().out

    border, centre = (json.loads((root / m / "report.json").read_text()) for m in ("border", "centre"))
    assert border["passed"] is False and centre["passed"] is True
    assert border["samples"] == 3 and border["samples_with_mask"] == 3
    assert border["summary"]["lrp"]["relevance_mass_accuracy"] == pytest.approx(0.0, abs=1e-6)
    assert centre["summary"]["lrp"]["relevance_mass_accuracy"] == pytest.approx(1.0)
    assert border["summary"]["lrp"]["pointing_game"] == 0.0 and centre["summary"]["lrp"]["pointing_game"] == 1.0

    suite = ET.parse(root / "border" / "report.xml").getroot().find("testsuite")
    assert suite.get("name") == "evaluate.lrp" and suite.get("failures") == "1"
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == ["relevance_mass_accuracy"]
    assert ET.parse(root / "centre" / "report.xml").getroot().find("testsuite").get("failures") == "0"


def test_fail_over_and_per_method_gates(data, capsys):
    common = ["--methods", "lrp", "random", "--metrics", "relevance_mass_accuracy"]
    # random's mass on the centre is about its area share (1/4): over 0.9 only for lrp
    assert run_cli(data, "centre.onnx", *common, "--fail-under", "lrp:relevance_mass_accuracy=0.9") == 0
    assert run_cli(data, "centre.onnx", *common, "--fail-under", "relevance_mass_accuracy=0.9") == 1
    assert run_cli(data, "border.onnx", *common, "--fail-over", "lrp:relevance_mass_accuracy=0.1") == 0
    capsys.readouterr()


def test_usage_and_gate_errors(data, capsys):
    # checked before the evaluation runs: usage errors (exit 2), one line listing the valid choices
    assert run_cli(data, "centre.onnx", "--methods", "nope") == 2
    err = capsys.readouterr().err
    assert "unknown method 'nope'" in err and "'integrated_gradients'" in err and len(err.strip().splitlines()) == 1
    assert run_cli(data, "centre.onnx", "--methods", "occlusion:windw=4") == 2
    assert "no option 'windw' (did you mean 'window'?); its options: ['window', 'stride'" in capsys.readouterr().err
    assert run_cli(data, "centre.onnx", "--methods", "lrp", "lrp") == 2
    assert "listed twice" in capsys.readouterr().err
    assert run_cli(data, "centre.onnx", "--metrics", "pointing") == 2
    assert "unknown metric 'pointing'" in capsys.readouterr().err
    assert run_cli(data, "centre.onnx", "--fail-under", "aopc=3") == 2
    assert "unknown metric 'aopc'" in capsys.readouterr().err
    assert run_cli(data, "centre.onnx", "--metrics", "region_perturbation", "--fail-under",
                   "relevance_mass_accuracy=0.1") == 1
    assert "was not computed" in capsys.readouterr().err
    assert cli_main(["evaluate", "--no-such-flag"]) == 2


# --- reports ---------------------------------------------------------------------------------

def test_table_json_and_plots_for_every_method(data, tmp_path, capsys):
    methods = ["lrp", "gradient", "occlusion:window=4,stride=4", "random"]
    code = run_cli(data, "centre.onnx", "--methods", *methods, "--out", str(tmp_path / "r"),
                   "--patch", "4", "--baseline", "0")
    assert code == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["method", "aopc_morf", "aopc_lerf", "morf_lerf_area", "faithfulness_correlation",
                                "relevance_mass_accuracy", "pointing_game"]
    assert [line.split()[0] for line in table[2:6]] == methods
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["settings"]["patch"] == 4 and report["methods"]["occlusion:window=4,stride=4"]["options"] == \
        {"window": 4, "stride": 4}
    curves = report["curves"]["lrp"]
    assert len(curves["morf"]) == 5 and curves["fraction"][0] == 0 and curves["fraction"][-1] == 1
    # the centre is 4 of 16 patches: MoRF removes all of it within the first 4 patch removals
    assert report["summary"]["lrp"]["morf_lerf_area"] > report["summary"]["random"]["morf_lerf_area"]
    png = tmp_path / "r" / "region_perturbation.png"
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size[0] > 400
        assert len(np.unique(np.asarray(img.convert("RGB")).reshape(-1, 3), axis=0)) > 5, "curves were drawn"


def test_model_randomisation_metric(data):
    root, x = data
    report = evaluate(str(root / "centre.onnx"), x, methods=["random", "gradient"],
                      metrics=["model_randomisation"], settings=Settings(randomisation_layers=2), progress=False)
    assert report.value("random", "randomisation_spearman") == pytest.approx(1.0)
    assert report.randomisation["random"]["layers"] and len(report.randomisation["random"]["spearman"]) == 2
    assert report.value("gradient", "randomisation_spearman") < 0.9


def test_randomisation_gate_fails_a_sign_flipped_copy_and_passes_an_unrelated_map(tmp_path, capsys):
    """The done-when of the randomisation check: Spearman of |R| (the default) fails the model
    whose LRP map becomes a sign-flipped copy, passes the one whose map becomes unrelated; the
    signed Spearman, averaged over the seeds' flipped (−1) and unflipped (+1) copies, passed it."""
    rng = np.random.default_rng(0)
    onnx.save(sign_flip_reader((1, 8, 8), 3, seed=0), tmp_path / "flip.onnx")
    np.save(tmp_path / "flip.npy", rng.uniform(0.5, 1.5, (2, 1, 8, 8)).astype(np.float32))
    onnx.save(orthogonal_mlp((1, 16, 16), 3, seed=0), tmp_path / "unrelated.onnx")
    np.save(tmp_path / "unrelated.npy", np.where(rng.random((2, 1, 16, 16)) < 0.5, -1, 1).astype(np.float32))
    gate = ["--methods", "lrp", "--composite", "epsilon", "--metrics", "model_randomisation",
            "--fail-over", "lrp:randomisation_spearman=0.5"]

    def run(name, *extra):
        code = cli_main(["evaluate", str(tmp_path / f"{name}.onnx"), str(tmp_path / f"{name}.npy"), *gate, *extra])
        return code, capsys.readouterr().out

    code, out = run("flip", "--out", str(tmp_path / "flip"))
    assert code == 1 and "FAIL fail-over lrp:randomisation_spearman=0.5 [lrp]: 1.0000" in out
    assert "1.0000 ± 0.0000" in out and "Spearman of |R|; of signed R: -0.3333 ± 1.1547" in out
    report = json.loads((tmp_path / "flip" / "report.json").read_text())
    entry = report["randomisation"]["lrp"]
    assert entry["similarity"] == "absolute" and entry["seeds"] == [0, 1, 2]
    assert entry["absolute"]["per_seed"] == pytest.approx([1, 1, 1])
    assert entry["signed"]["per_seed"] == pytest.approx([-1, 1, -1])
    assert report["values"]["lrp"]["randomisation_spearman"]["seed_std_from"] == "3 seeds"

    code, out = run("flip", "--randomisation", "signed")
    assert code == 0 and "PASS fail-over lrp:randomisation_spearman=0.5 [lrp]: -0.3333" in out
    code, out = run("unrelated")
    assert code == 0 and "PASS fail-over lrp:randomisation_spearman=0.5" in out
    assert cli_main(["evaluate", str(tmp_path / "flip.onnx"), str(tmp_path / "flip.npy"), "--randomisation",
                     "abs"]) == 2


def test_faithfulness_correlation_carries_its_spread_over_seeds(data, capsys):
    assert run_cli(data, "centre.onnx", "--methods", "lrp", "random", "--metrics", "faithfulness_correlation") == 0
    out = capsys.readouterr().out
    assert "faithfulness_correlation: ± std over seeds (bootstrap over the subsets)" in out
    row = next(line for line in out.splitlines() if line.startswith("random"))
    assert "±" in row


# --- inputs and masks ------------------------------------------------------------------------

def test_directory_streams_in_batches_with_masks_from_an_array(data, tmp_path):
    root, x = data
    for i in range(5):
        np.save(tmp_path / f"s{i}.npy", x[i % 3])
    settings = Settings(batch_size=2, steps=2, faithfulness_runs=3)
    report = evaluate(str(root / "centre.onnx"), [tmp_path], masks=CENTRE, methods=["lrp"],
                      metrics=["relevance_mass_accuracy", "region_perturbation"], settings=settings, progress=False)
    assert report.samples == 5 and report.samples_with_mask == 5
    assert report.value("lrp", "relevance_mass_accuracy") == pytest.approx(1.0)
    assert report.values["lrp"]["aopc_morf"]["n"] == 5


def test_mask_finder_prefers_mask_files_and_never_an_input(tmp_path):
    for name in ("cat.png", "cat_mask.png", "cat_model.npy", "coffee.png", "dog_model.png"):
        (tmp_path / name).write_bytes(b"")
    finder = MaskFinder(tmp_path, exclude=[tmp_path / "cat_model.npy"])
    assert finder.path_for("cat_model").name == "cat_mask.png"
    assert finder.path_for("cat_model_3").name == "cat_mask.png"
    assert finder.path_for("coffee_model") is None, "coffee.png is an image, not a mask"
    assert finder.path_for("dog_model").name == "dog_model.png", "an exactly named file in a mask directory"
    assert MaskFinder(tmp_path, exclude=[tmp_path / "dog_model.png"]).path_for("dog_model") is None


def test_method_and_gate_parsing():
    spec = MethodSpec.parse("occlusion:window=8,stride=4,baseline=mean")
    assert spec.options == {"window": 8, "stride": 4, "baseline": "mean"}
    assert spec.resolved(Settings(), patch=16)["window"] == 8
    assert MethodSpec.parse("occlusion").resolved(Settings(baseline=0.0), patch=16) == \
        {"window": 16, "stride": 8, "baseline": 0.0}
    gate = Gate.parse("lrp:aopc_morf=1.5")
    assert (gate.method, gate.metric, gate.threshold) == ("lrp", "aopc_morf", 1.5)
    with pytest.raises(InvalidInput):
        Gate.parse("aopc_morf")
    with pytest.raises(InvalidInput):
        MethodSpec.parse("lrp:composite")


def test_json_on_stdout_and_quiet(data, capsys):
    common = ["--methods", "lrp", "--metrics", "pointing_game"]
    assert run_cli(data, "centre.onnx", *common, "--json", "--fail-under", "pointing_game=1") == 0
    assert json.loads(capsys.readouterr().out)["summary"]["lrp"]["pointing_game"] == 1.0
    assert run_cli(data, "border.onnx", *common, "--quiet", "--fail-under", "pointing_game=1") == 1
    out, err = capsys.readouterr()
    assert out == "" and "pointing_game=1 [lrp]" in err and len(err.strip().splitlines()) == 1


def test_registered_as_onnx_lrp_evaluate(data, capsys):
    root, _ = data
    args = ["evaluate", str(root / "border.onnx"), str(root / "inputs"), "--masks", str(root / "masks"),
            "--methods", "lrp", "--metrics", "relevance_mass_accuracy", "--quiet"]
    assert cli_main(args + ["--fail-under", "relevance_mass_accuracy=0.5"]) == 1
    assert cli_main(args + ["--fail-under", "relevance_mass_accuracy=0"]) == 0
    assert cli_main(args + ["--no-such-flag"]) == 2
    capsys.readouterr()


def test_python_dash_m_runs(data):
    root, _ = data
    proc = subprocess.run([sys.executable, "-m", "onnx_lrp", "evaluate", str(root / "centre.onnx"),
                           str(root / "inputs"), "--methods", "lrp", "--metrics", "pointing_game", "--masks",
                           str(root / "masks"), "--fail-under", "pointing_game=1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "PASS fail-under pointing_game=1" in proc.stdout


# --- a shipped model -------------------------------------------------------------------------

def test_lrp_beats_gradient_and_random_on_the_cifar10_cat():
    """The done-when comparison on the shipped CIFAR-10 CNN (defaults: patch 2, 16 steps, mean
    baseline); the full numbers for both shipped image models are in the evaluation notes."""
    from pathlib import Path

    models = Path(__file__).resolve().parents[1] / "models"
    report = evaluate(str(models / "cifar10_cnn.onnx"), [models / "samples" / "cat_cifar10.npy"],
                      methods=["lrp", "gradient", "random"], metrics=["region_perturbation"], progress=False)
    for metric in ("aopc_morf", "morf_lerf_area"):
        assert report.value("lrp", metric) > report.value("gradient", metric)
        assert report.value("lrp", metric) > report.value("random", metric)
