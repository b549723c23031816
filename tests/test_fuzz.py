"""Fuzzing with a fixed seed and few examples (``tools/fuzz.py`` runs the same checks for longer).

Random valid models (see :mod:`fuzz_cases`): the explanation is finite, the explainer's output is
onnxruntime's output of the original model, LRP-0 (CP-LRP on attention) conserves when the model
has no biases, the gradient program matches finite differences — or a documented
:class:`onnx_lrp.OnnxLrpError` is raised, never another exception. Mutated model bytes
are refused with ``ModelLoadError``/``InvalidInput`` (valid mutations — odd or repeated names —
are explained); they run in a child process so a native crash is a failure, not a lost run.
"""
from __future__ import annotations

import collections

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzz_cases as fuzz

#: Seeds drawing, per kind, a model that exercises the kind's new ops (attention with a Where mask,
#: an embedding, a layout=1 recurrent layer, ...).
KIND_SEEDS = {"image": 91, "sequence": 23, "tokens": 14, "recurrent": 1, "vector": 1}

FUZZ = settings(max_examples=20, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(st.data(), st.booleans())
def test_random_valid_models(data, conserving):
    drawn = fuzz.random_model(fuzz.HypothesisChooser(data), conserving)
    outcome = fuzz.check_model(drawn)
    assert outcome.ok, f"{outcome.kind}: {outcome.detail} (ops {drawn.ops})"


@pytest.mark.parametrize("kind", fuzz.KINDS)
def test_one_model_of_each_kind(kind):
    """A bias-free model of each kind (image, sequence with attention, token ids, recurrent,
    vector) from a fixed seed, so every kind runs in CI whatever hypothesis draws."""
    drawn = fuzz.random_model(fuzz.NumpyChooser(KIND_SEEDS[kind]), conserving=True, kind=kind)
    outcome = fuzz.check_model(drawn)
    assert outcome.ok, f"{outcome.kind}: {outcome.detail} (ops {drawn.ops})"
    assert outcome.kind == "explained", outcome  # the seeds are chosen to draw models that are explained


@pytest.mark.parametrize("kind", ["vector", "tokens"])
def test_the_gradient_check_catches_a_gradient_off_by_ten_percent(kind, monkeypatch):
    """The finite-difference check can fail: a gradient scaled by 1.1 is caught (on token ids,
    where the differences are taken at the embedding output, too)."""
    from onnx_lrp.attribution import Attributor

    exact = Attributor.gradient
    monkeypatch.setattr(Attributor, "gradient", lambda self, x, target, batch_size=None:
                        exact(self, x, target, batch_size) * 1.1)
    drawn = fuzz.random_model(fuzz.NumpyChooser(KIND_SEEDS[kind]), conserving=True, kind=kind)
    outcome = fuzz.check_model(drawn, ("lrp0",))
    assert outcome.kind == "gradient differs from finite differences", outcome


def test_mutated_model_bytes_are_refused_cleanly():
    cases = fuzz.mutant_cases(30, seed=0)
    outcomes = fuzz.run_in_subprocess(cases)
    failures = [f"{c['kind']}: {o.kind}: {o.detail}" for c, o in zip(cases, outcomes) if not o.ok]
    assert not failures, "\n".join(failures)
    # every mutation kind ran, and the broken ones were refused rather than explained
    kinds = collections.Counter(c["kind"] for c in cases)
    assert set(kinds) == set(fuzz.MUTATIONS)
    for c, o in zip(cases, outcomes):
        if c["kind"] in ("truncate", "cycle", "dangling_input", "bad_raw_data", "wrong_attribute_type", "wrong_dims",
                         "wrong_element_type"):
            assert o.kind.startswith("refused"), (c["kind"], o)


def test_a_native_crash_in_the_child_is_reported_as_a_failure(monkeypatch):
    """The subprocess harness itself: a child that dies mid-case yields a failing outcome for
    that case, and the cases after it still run."""
    broken = {"bytes": b"not a model".hex(), "x": [[0.0]], "reference": None}
    cases = [dict(broken, kind="truncate"), dict(broken, kind="abort"), dict(broken, kind="truncate")]
    monkeypatch.setenv("FUZZ_ABORT_ON", "abort")
    outcomes = fuzz.run_in_subprocess(cases)
    assert len(outcomes) == 3
    assert outcomes[0].ok and outcomes[2].ok
    assert not outcomes[1].ok and outcomes[1].kind.startswith("native crash")
