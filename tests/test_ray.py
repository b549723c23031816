"""onnx_lrp.ray end to end on a local Ray cluster started here (skipped without the [ray] extra):
the relevance of every row equals the single-machine Explainer's, and it round-trips through
Parquet and NumPy files."""
from __future__ import annotations

import pathlib

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pytest.importorskip("pyarrow")

import onnx_lrp  # noqa: E402
from onnx_lrp.attribution import attribute  # noqa: E402

MODEL = pathlib.Path(__file__).resolve().parents[1] / "models" / "cifar10_cnn.onnx"
N = 12
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray's own, raised inside ray.data


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def rows():
    return (np.random.default_rng(0).uniform(0, 255, (N, 3, 32, 32))).astype(np.float32)


def test_ray_gives_the_single_machine_relevance_and_writes_files(cluster, rows, tmp_path):
    from onnx_lrp.ray import explain_dataset, write_relevance

    targets = np.arange(N) % 10
    ds = ray.data.from_items([{"id": i, "x": rows[i], "label": int(targets[i])} for i in range(N)])
    out = explain_dataset(ds, str(MODEL), column="x", target_column="label", batch_size=5, concurrency=2,
                          num_cpus=0.5).materialize()
    got = sorted(out.take_all(), key=lambda r: r["id"])
    assert [r["id"] for r in got] == list(range(N))
    assert set(got[0]) == {"id", "label", "relevance", "target", "output"}, "the input column is dropped"

    reference = onnx_lrp.Explainer(str(MODEL)).explain(rows, targets)
    relevance = np.stack([r["relevance"] for r in got])
    # the same compiled graph on the same rows; only onnxruntime's batch grouping differs
    np.testing.assert_allclose(relevance, reference.relevance, rtol=1e-5, atol=1e-6 * np.abs(reference.relevance).max())
    np.testing.assert_array_equal([r["target"] for r in got], targets)
    np.testing.assert_allclose(np.stack([r["output"] for r in got]), reference.output, rtol=1e-5, atol=1e-5)

    write_relevance(out, tmp_path / "pq", format="parquet")
    back = sorted(ray.data.read_parquet(str(tmp_path / "pq")).take_all(), key=lambda r: r["id"])
    np.testing.assert_array_equal(np.stack([r["relevance"] for r in back]), relevance)

    write_relevance(out, tmp_path / "npy", format="numpy")
    files = sorted((tmp_path / "npy").glob("*.npy"))
    assert files and sum(len(np.load(f)) for f in files) == N


def test_ray_baseline_method_with_predicted_targets(cluster, rows):
    from onnx_lrp.ray import explain_dataset

    ds = ray.data.from_items([{"id": i, "x": rows[i]} for i in range(4)])
    got = sorted(explain_dataset(ds, str(MODEL), column="x", method="gradient", batch_size=4, concurrency=1,
                                 num_cpus=0.5).take_all(), key=lambda r: r["id"])
    exp = onnx_lrp.Explainer(str(MODEL))
    np.testing.assert_allclose(np.stack([r["relevance"] for r in got]), attribute(exp, rows[:4], None, "gradient"),
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal([r["target"] for r in got], exp.explain(rows[:4]).target)
