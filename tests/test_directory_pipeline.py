"""The directory pipeline (reader threads, batched explain, writer threads), ``--resume`` and stopping on
SIGINT/SIGTERM: the same files as one input at a time, nothing partial left, no hang when a stage fails.

The command-line runs use the shipped CIFAR-10 model and its sample picture (real onnxruntime);
the pipeline's own failure paths run with small stages of plain Python.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from onnx_lrp import cli, pipeline
from onnx_lrp.inputs import Sample

ROOT = Path(__file__).resolve().parent.parent
CIFAR = ROOT / "models" / "cifar10_cnn.onnx"
SAMPLES = ROOT / "models" / "samples"


def pictures(folder: Path, count: int) -> Path:
    """``count`` different 32×32 pictures (the CIFAR sample, shifted), a broken file and an array."""
    folder.mkdir()
    base = np.asarray(Image.open(SAMPLES / "cat_cifar10.png").convert("RGB"))
    for i in range(count):
        Image.fromarray(np.roll(base, (i % 7, i // 7), axis=(0, 1))).save(folder / f"p{i:03d}.png")
    return folder


def run_main(monkeypatch, capsys, threads: pipeline.Threads, *argv):
    monkeypatch.setattr(pipeline.Threads, "for_cores", classmethod(lambda cls, cores=None: threads))
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def files_of(out: Path) -> dict[str, bytes]:
    """Every file's bytes; summaries without their timings (which differ from run to run)."""
    found = {}
    for path in sorted(out.iterdir()):
        data = path.read_bytes()
        if path.suffix == ".json":
            summary = json.loads(data)
            summary.pop("timings_s")
            data = json.dumps(summary, sort_keys=True).encode()
        found[path.name] = data
    return found


def no_temporaries(out: Path) -> None:
    hidden = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert not hidden, f"temporary files left behind: {hidden}"


# --- the same files as one input at a time -------------------------------------------------------
def test_pipeline_writes_the_files_of_a_sequential_run_byte_for_byte(monkeypatch, capsys, tmp_path):
    src = pictures(tmp_path / "in", 13)
    (src / "p005.png").write_text("not a picture")  # an error in the middle
    shutil.copy(SAMPLES / "cat_cifar10.npy", src / "q.npy")
    runs = {}
    for label, threads in (("sequential", pipeline.Threads(readers=0, writers=0)),
                           ("pipeline", pipeline.Threads(readers=3, writers=3, read_ahead=4, write_behind=2))):
        out = tmp_path / "out"  # the same folder for both: summaries and the report hold its path
        code, stdout, stderr = run_main(monkeypatch, capsys, threads, CIFAR, src, "--out", out, "--html",
                                        "--batch-size", "4")
        assert code == 1 and "p005.png" in stderr and "1 of 14 inputs failed" in stderr
        no_temporaries(out)
        lines = [line for line in stdout.splitlines() if "relevance sum" in line]
        runs[label] = files_of(out), lines
        out.rename(tmp_path / label)
    assert len(runs["sequential"][1]) == 13
    assert runs["pipeline"][1] == runs["sequential"][1]  # the same lines in the same (input) order
    assert runs["pipeline"][0].keys() == runs["sequential"][0].keys()
    for name, data in runs["sequential"][0].items():
        assert runs["pipeline"][0][name] == data, name
    assert len([n for n in runs["pipeline"][0] if n.endswith(".overlay.png")]) == 12


# --- --resume ------------------------------------------------------------------------------------------
def test_resume_skips_complete_inputs_and_redoes_missing_or_temporary_ones(monkeypatch, capsys, tmp_path):
    src, out = pictures(tmp_path / "in", 6), tmp_path / "out"
    threads = pipeline.Threads.for_cores()
    code, stdout, _ = run_main(monkeypatch, capsys, threads, CIFAR, src, "--out", out, "--html", "--json")
    assert code == 0
    first = json.loads(stdout)["results"]
    (out / "p001.heatmap.png").unlink()  # one file missing
    (out / "p004.json").rename(out / ".p004.json.abc123.tmp")  # the summary only a temporary: not done
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    time.sleep(0.02)
    code, stdout, _ = run_main(monkeypatch, capsys, threads, CIFAR, src, "--out", out, "--html", "--json",
                               "--resume")
    assert code == 0
    doc = json.loads(stdout)
    assert doc["skipped"] == 4
    assert [r["name"] for r in doc["results"]] == [f"p{i:03d}" for i in range(6)]
    for name in ("p000", "p002", "p003", "p005"):  # untouched
        for path in out.glob(f"{name}.*"):
            assert path.stat().st_mtime_ns == before[path.name], path.name
    for name in ("p001", "p004"):  # redone, every file
        summary = json.loads((out / f"{name}.json").read_text())
        assert {Path(p).name for p in summary["files"].values()} == {
            f"{name}.{kind}" for kind in ("relevance.npy", "heatmap.png", "overlay.png", "json")}
        assert (out / f"{name}.heatmap.png").stat().st_mtime_ns != before.get(f"{name}.heatmap.png")
    assert [r["relevance_sum"] for r in doc["results"]] == [r["relevance_sum"] for r in first]
    page = (out / "index.html").read_text()
    assert all(f">p{i:03d}<" in page for i in range(6))  # the report has every input's card

    code, stdout, _ = run_main(monkeypatch, capsys, threads, CIFAR, src, "--out", out, "--resume")
    assert code == 0 and "skipped 6 inputs" in stdout and "explained 0 inputs" in stdout


# --- SIGINT / SIGTERM ----------------------------------------------------------------------------------
@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_cleanly_and_resume_completes_the_rest(tmp_path, signum, code):
    count = 60
    src, out = pictures(tmp_path / "in", count), tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "onnx_lrp", str(CIFAR), str(src), "--out", str(out), "--html", "--batch-size", "2"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out.is_dir() and any(out.glob("*.json"))) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("onnx-lrp: stopped after ") and last.endswith("rerun with --resume to continue"), stderr
    done = int(last.split()[3])
    assert 0 < done < count and f"of {count} input files" in last
    no_temporaries(out)
    summaries = sorted(out.glob("*.json"))
    assert len(summaries) == done
    for path in summaries:  # every summary's files are complete
        for kind, file in json.loads(path.read_text())["files"].items():
            np.load(file) if kind == "relevance" else Image.open(file).load() if file.endswith(".png") else None
    assert (out / "index.html").is_file()

    proc = subprocess.run(argv + ["--resume", "--json", "--quiet"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["skipped"] == done and len(doc["results"]) == count
    assert len(list(out.glob("*.overlay.png"))) == count
    no_temporaries(out)


def test_an_input_the_writer_refuses_fails_alone_and_a_write_error_ends_the_run(monkeypatch, capsys, tmp_path):
    """A writer's InvalidInput (e.g. a relevance the heatmap refuses) fails that input only; an
    OutputError (e.g. a full disk) ends the run with one line, without a hang or a temporary file."""
    from onnx_lrp import render
    from onnx_lrp.errors import OutputError
    from onnx_lrp.heatmap import HeatmapError

    src = pictures(tmp_path / "in", 8)
    write_result = render.write_result

    def refusing(out, name, *args, **kwargs):
        if name == "p003":
            raise HeatmapError("relevance holds NaN or Inf; check the model output and the explained input")
        if name == "p005" and out.name == "full":
            raise OutputError(f"cannot write {str(out / name)!r} (No space left on device); is the disk full?")
        return write_result(out, name, *args, **kwargs)

    monkeypatch.setattr(render, "write_result", refusing)
    threads = pipeline.Threads(readers=2, writers=2, read_ahead=3, write_behind=2)
    code, stdout, stderr = run_main(monkeypatch, capsys, threads, CIFAR, src, "--out", tmp_path / "out", "--json")
    doc = json.loads(stdout)
    assert code == 1 and [r["name"] for r in doc["results"]] == [f"p{i:03d}" for i in range(8) if i != 3]
    assert "p003" in doc["errors"][0]["input"] and "1 of 8 inputs failed" in stderr
    code, _, stderr = run_main(monkeypatch, capsys, threads, CIFAR, src, "--out", tmp_path / "full")
    last = stderr.strip().splitlines()[-1]
    assert code == 1 and last.startswith("onnx-lrp: error: cannot write") and "full" in last
    no_temporaries(tmp_path / "full")


# --- failures inside the pipeline ------------------------------------------------------------------------
def _stages(record: list, fail_read=None, fail_write=None, delay=0.0):
    """Stages over fake files: file k holds one sample; ``fail_*`` raise a RuntimeError at that file."""
    def read(path):
        k = int(path.name)
        if k == fail_read:
            raise RuntimeError(f"reader broke at {k}")
        yield Sample(str(k), path.name, None, np.full((1, 2), k, np.float32))

    def write(sample):
        time.sleep(random.random() * delay)
        if int(sample.name) == fail_write:
            raise RuntimeError(f"writer broke at {sample.name}")
        return lambda: record.append(sample.name)

    return pipeline.Stages(read=read, admit=lambda sample: None,
                           explain=lambda samples: [lambda s=s: write(s) for s in samples],
                           done=lambda path: record.append(f"done {path.name}"))


def _run_in_thread(files, stages, threads, stop=None):
    """Run the pipeline in a thread; fails the test instead of hanging if it does not end in 30 s."""
    outcome = {}

    def target():
        try:
            outcome["files"] = pipeline.run(files, stages, 3, threads, stop)
        except Exception as exc:  # noqa: BLE001 - checked by the caller
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "the pipeline hung"
    return outcome


THREADS = pipeline.Threads(readers=3, writers=4, read_ahead=5, write_behind=3)


def test_records_come_in_input_order_whatever_order_the_writers_finish():
    record = []
    files = [Path(str(k)) for k in range(40)]
    outcome = _run_in_thread(files, _stages(record, delay=0.005), THREADS)
    assert outcome == {"files": 40}
    assert record == [x for k in range(40) for x in (str(k), f"done {k}")]


@pytest.mark.parametrize("where", ["read", "write"])
def test_a_failing_reader_or_writer_ends_the_run_with_its_error_without_hanging(where):
    record = []
    files = [Path(str(k)) for k in range(40)]
    stages = _stages(record, **{f"fail_{where}": 17}, delay=0.002)
    outcome = _run_in_thread(files, stages, THREADS)
    error = outcome.get("error")
    assert isinstance(error, RuntimeError) and f"{where.rstrip('e')}er broke at 17" in str(error)
    in_order = [x for k in range(17) for x in (str(k), f"done {k}")]
    assert record == in_order[:len(record)]  # what was recorded before the error came, in order


def test_a_stop_records_what_was_written_and_drops_the_rest():
    record = []
    stop = threading.Event()
    files = [Path(str(k)) for k in range(40)]
    stages = _stages(record)
    stages = pipeline.Stages(read=stages.read, admit=stages.admit, explain=stages.explain,
                             done=lambda path: (record.append(f"done {path.name}"), path.name == "9" and stop.set()))
    outcome = _run_in_thread(files, stages, THREADS, stop)
    done = outcome["files"]
    assert 10 <= done < 40
    assert record[:2 * done] == [x for k in range(done) for x in (str(k), f"done {k}")]


def test_written_pngs_hold_the_heatmap_and_overlay_pixels(tmp_path):
    """Cheaper PNG encoding (zlib level 1) and the overlay reusing the heatmap change no pixel."""
    from onnx_lrp import render
    from onnx_lrp.metadata import Preprocess

    rng = np.random.default_rng(0)
    relevance = rng.normal(size=(1, 3, 24, 20)).astype(np.float32)
    picture = Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8))
    pre = Preprocess(layout="nchw")
    files = render.write_result(tmp_path, "x", relevance, pre, "coldnhot", picture)
    rmap = render.relevance_map(relevance, pre)
    np.testing.assert_array_equal(np.asarray(Image.open(files["heatmap"])), render.heatmap_rgb(rmap, "coldnhot"))
    overlay = render.overlay_rgb(picture, rmap, "coldnhot")
    np.testing.assert_array_equal(np.asarray(Image.open(files["overlay"])), overlay)
