"""Metrics (onnx_lrp.evaluation.metrics) on cases whose answer is known by construction: models built with
onnx.helper that only read one region, linear models with exact attributions, hand-made maps."""
from __future__ import annotations

import gc

import numpy as np
import pytest

import onnx_lrp
from eval_models import linear, orthogonal_mlp, region_reader, relu_mlp, sign_flip_reader
from onnx_lrp.evaluation import metrics as M
from onnx_lrp.attribution import attribute
from onnx_lrp.errors import InvalidInput

H = W = 8
REGION = np.zeros((H, W), bool)
REGION[:4, :4] = True  # the top-left 4×4: four 2×2 patches of sixteen


@pytest.fixture(scope="module")
def region_exp():
    return onnx_lrp.Explainer(region_reader(REGION, channels=2))


def ones(n=1):
    return np.ones((n, 2, H, W), np.float32)


# --- region perturbation ------------------------------------------------------------------------

def test_region_perturbation_curves_of_a_model_reading_one_region(region_exp):
    """f(x) = Σ_region x over 2 channels = 32 for x = 1. Relevance = the region. Patch 2 → 16
    patches, 16 steps remove one each (baseline 0): MoRF removes the 4 region patches first
    (each lowers f by 2·4 = 8), LeRF last."""
    relevance = np.broadcast_to(REGION, (1, 2, H, W)).astype(np.float32)
    c = M.perturbation_curves(region_exp, ones(), relevance, 0, patch=2, steps=16, baseline=0.0)
    np.testing.assert_allclose(c.fraction, np.arange(17) / 16)
    np.testing.assert_allclose(c.morf[0], [32, 24, 16, 8] + [0] * 13)
    np.testing.assert_allclose(c.lerf[0], [32] * 13 + [24, 16, 8, 0])
    np.testing.assert_allclose(c.aopc_morf, [(0 + 8 + 16 + 24 + 32 * 13) / 17])
    np.testing.assert_allclose(c.aopc_lerf, [(8 + 16 + 24 + 32) / 17])
    np.testing.assert_allclose(c.area_between, [(8 + 16 + 24 + 32 * 13 - 8 - 16 - 24 - 32) / 17])


def test_pixel_flipping_and_partial_fraction(region_exp):
    """patch=1: 64 pixels, 16 in the region; 8 steps over half of them (32 pixels, 4 per step):
    the region's 16 pixels go in the first 4 MoRF steps, 2·4 = 8 per step."""
    relevance = np.broadcast_to(REGION, (1, 2, H, W)).astype(np.float32)
    morf = M.region_perturbation(region_exp, ones(), relevance, 0, order="morf", patch=1, steps=8,
                                 fraction=0.5, baseline=0.0)
    np.testing.assert_allclose(morf[0], [32, 24, 16, 8, 0, 0, 0, 0, 0])
    lerf = M.region_perturbation(region_exp, ones(), relevance, 0, order="lerf", patch=1, steps=8,
                                 fraction=0.5, baseline=0.0)
    np.testing.assert_allclose(lerf[0], [32] * 9)


def test_mean_baseline_of_a_constant_input_changes_nothing(region_exp):
    relevance = np.random.default_rng(0).standard_normal((1, 2, H, W)).astype(np.float32)
    c = M.perturbation_curves(region_exp, 3 * ones(), relevance, 0, patch=2, steps=4, baseline="mean")
    np.testing.assert_allclose(c.morf, 96.0)
    np.testing.assert_allclose(c.aopc_morf, 0.0)


def test_lrp_beats_random_on_the_region_model(region_exp):
    x = np.random.default_rng(1).uniform(0.5, 1.5, (3, 2, H, W)).astype(np.float32)
    areas = {m: M.perturbation_curves(region_exp, x, attribute(region_exp, x, 0, m), 0, patch=2, steps=8,
                                      baseline=0.0).area_between.mean() for m in ("lrp", "random")}
    assert areas["lrp"] > areas["random"] + 5


def test_ties_are_broken_by_a_seed_not_by_position(region_exp):
    x = np.random.default_rng(2).uniform(0.5, 1.5, (1, 2, H, W)).astype(np.float32)
    flat = np.zeros_like(x)
    a = M.region_perturbation(region_exp, x, flat, 0, patch=2, steps=16, baseline=0.0, seed=0)
    b = M.region_perturbation(region_exp, x, flat, 0, patch=2, steps=16, baseline=0.0, seed=1)
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, M.region_perturbation(region_exp, x, flat, 0, patch=2, steps=16,
                                                           baseline=0.0, seed=0, batch_size=3))


def test_aopc_formula():
    curves = np.array([[4.0, 3.0, 1.0], [2.0, 2.0, 2.0]])
    np.testing.assert_allclose(M.aopc(curves), [(0 + 1 + 3) / 3, 0.0])


# --- faithfulness correlation ---------------------------------------------------------------

def test_faithfulness_correlation_of_exact_linear_attributions():
    """f = w·x + b with baseline 0: removing S lowers f by Σ_S w⊙x exactly, so R = w⊙x
    correlates perfectly (1), −R anti-correlates (−1)."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((1 * 6 * 6, 2)).astype(np.float32)
    exp = onnx_lrp.Explainer(linear(w, [0.5, 0.0], (1, 6, 6)))
    x = rng.standard_normal((2, 1, 6, 6)).astype(np.float32)
    exact = x * w[:, 0].reshape(1, 6, 6)
    fc = M.faithfulness_correlation(exp, x, exact, 0, patch=1, subset=6, runs=20, baseline=0.0)
    np.testing.assert_allclose(fc, 1.0, atol=1e-5)
    np.testing.assert_allclose(M.faithfulness_correlation(exp, x, -exact, 0, patch=1, subset=6, runs=20,
                                                          baseline=0.0), -1.0, atol=1e-5)
    assert M.faithfulness_correlation(exp, x, np.ones_like(x), 0, patch=1, subset=6, runs=20, baseline=0.0)[0] \
        != pytest.approx(1.0)


def test_subsets_drawn_once_serve_every_explanation_and_bootstrap_their_spread():
    """The drops do not depend on the explanation: reusing them gives what a fresh draw with the
    same seed gives. The bootstrap over one draw's subsets estimates the spread of the value over
    draws: 2000 subsets split into 40 independent draws of 50 give the spread it must match."""
    rng = np.random.default_rng(4)
    w = rng.standard_normal((1 * 8 * 8, 2)).astype(np.float32)
    exp = onnx_lrp.Explainer(linear(w, [0.0, 0.0], (1, 8, 8)))
    x = rng.standard_normal((2, 1, 8, 8)).astype(np.float32)
    exact = x * w[:, 0].reshape(1, 8, 8)
    noisy = exact + 2 * exact.std() * rng.standard_normal(x.shape).astype(np.float32)
    options = dict(patch=1, subset=8, baseline=0.0, seed=3)
    drops = M.subset_drops(exp, x, 0, runs=2000, **options)
    assert drops.inside.shape == (2, 2000, 64) and (drops.inside.sum(axis=2) == 8).all()
    np.testing.assert_allclose(M.faithfulness_correlation(exp, x, noisy, 0, drops=drops),
                               M.faithfulness_correlation(exp, x, noisy, 0, runs=2000, **options))
    draws = [M.SubsetDrops(drops.labels, drops.inside[:, k:k + 50], drops.drops[:, k:k + 50])
             for k in range(0, 2000, 50)]
    values = np.array([M.faithfulness_correlation(exp, x, noisy, 0, drops=d) for d in draws])
    assert 0.2 < values.mean() < 0.8
    bootstrap = np.array([M.faithfulness_spread(noisy, d) for d in draws])
    np.testing.assert_allclose(bootstrap.mean(axis=0), values.std(axis=0, ddof=1), rtol=0.3)
    with pytest.raises(InvalidInput, match="do not match the subsets"):
        M.faithfulness_correlation(exp, x[:1], noisy[:1], 0, drops=drops)


def test_faithfulness_correlation_is_nan_for_a_constant_attribution_sum(region_exp):
    fc = M.faithfulness_correlation(region_exp, ones(), np.ones((1, 2, H, W), np.float32), 0, patch=2,
                                    subset=4, runs=8, baseline=0.0)
    assert np.isnan(fc).all()


# --- localisation -------------------------------------------------------------------------

def test_relevance_mass_accuracy_by_hand():
    mask = np.zeros((2, 3), bool)
    mask[0, :2] = True
    rel = np.zeros((1, 2, 2, 3), np.float32)  # two channels, summed into the map
    rel[0, 0, 0, 0], rel[0, 1, 0, 0] = 1.0, 1.0  # 2 inside
    rel[0, 0, 0, 1] = 1.0                        # 1 inside
    rel[0, 0, 1, 2] = 1.0                        # 1 outside
    rel[0, 1, 1, 0] = -4.0                       # negative, outside
    np.testing.assert_allclose(M.relevance_mass_accuracy(rel, mask), [3 / 4])
    assert np.isnan(M.relevance_mass_accuracy(rel, mask, positive_only=False)).all()  # signed total is 0
    rel[0, 1, 1, 0] = -2.0
    np.testing.assert_allclose(M.relevance_mass_accuracy(rel, mask, positive_only=False), [3 / 2])


def test_pointing_game_by_hand():
    mask = np.zeros((10, 10), bool)
    mask[0:3, 0:3] = True
    rel = np.zeros((3, 1, 10, 10), np.float32)
    rel[0, 0, 1, 1] = 5   # peak inside
    rel[1, 0, 5, 2] = 5   # peak 3 rows below the mask (distance 3 to (2, 2))
    rel[2, 0, 9, 9] = 5   # far away
    np.testing.assert_array_equal(M.pointing_game(rel, mask), [True, False, False])
    np.testing.assert_array_equal(M.pointing_game(rel, mask, tolerance=3), [True, True, False])
    with pytest.raises(InvalidInput, match="mask of shape"):
        M.pointing_game(rel, np.zeros((4, 4), bool))


def test_localisation_of_a_model_reading_one_region(region_exp):
    x = np.random.default_rng(4).uniform(0.5, 1.5, (2, 2, H, W)).astype(np.float32)
    lrp = attribute(region_exp, x, 0, "lrp")
    np.testing.assert_allclose(M.relevance_mass_accuracy(lrp, REGION), 1.0, rtol=1e-6)
    np.testing.assert_allclose(M.relevance_mass_accuracy(lrp, ~REGION), 0.0, atol=1e-6)
    assert M.pointing_game(lrp, REGION).all() and not M.pointing_game(lrp, ~REGION).any()


# --- model randomisation ------------------------------------------------------------------

@pytest.fixture(scope="module")
def mlp_exp():
    return onnx_lrp.Explainer(relu_mlp((4, 8, 8), 32, 4, seed=7))


def test_randomisable_layers_are_the_dense_layers_in_order(mlp_exp):
    layers = M.randomisable_layers(mlp_exp, (4, 8, 8))
    assert [len(p) for _, p in layers] == [2, 2, 2]
    assert len({name for name, _ in layers}) == 3


def test_a_model_free_explanation_fails_the_sanity_check(mlp_exp):
    """``random`` ignores the model: its explanation is the same at every step (Spearman 1)."""
    x = np.random.default_rng(5).standard_normal((2, 4, 8, 8)).astype(np.float32)
    res = M.model_randomisation(mlp_exp, x, None, "random", seed=1)
    assert len(res.layers) == 3 and res.correlation.shape == (3, 2)
    np.testing.assert_allclose(res.correlation, 1.0)
    assert res.layers == [name for name, _ in reversed(M.randomisable_layers(mlp_exp, (4, 8, 8)))]


def test_gradient_decorrelates_once_the_model_is_random(mlp_exp):
    """Once every layer is random, the gradient is a product of fresh random matrices: over 64
    map positions its rank correlation with the original has standard deviation ≈ 1/8."""
    x = np.random.default_rng(6).standard_normal((2, 4, 8, 8)).astype(np.float32)
    alive = _live_explainers()
    res = M.model_randomisation(mlp_exp, x, 0, "gradient", layers=2, seed=2)
    assert _live_explainers() <= alive, "the randomised models are released after the check"
    assert len(res.layers) == 2
    assert np.abs(res.correlation[-1]).max() < 0.5
    original = attribute(mlp_exp, x, 0, "gradient")
    again = attribute(mlp_exp, x, 0, "gradient")
    np.testing.assert_array_equal(original, again), "the explainer's own weights are left untouched"


def _live_explainers() -> int:
    gc.collect()
    return sum(isinstance(o, onnx_lrp.Explainer) for o in gc.get_objects())


def test_constant_explanations_are_left_out_not_counted_as_zero(mlp_exp):
    def zeros(attributor, x, target, batch_size):
        return np.zeros_like(x)

    x = np.random.default_rng(7).standard_normal((2, 4, 8, 8)).astype(np.float32)
    res = M.model_randomisation(mlp_exp, x, 0, zeros, layers=2)
    assert np.isnan(res.correlation).all() and np.isnan(res.mean) and np.isnan(res.per_layer).all()
    assert any("constant" in note for note in res.notes)


SIGN_SHAPE = (1, 8, 8)


def test_a_sign_flipped_copy_fails_the_randomisation_check():
    """Re-initialising the only dense layer gives the target a weight of random sign: LRP's map is
    the original times ±1. Spearman of |R| sees the copy (1 > 0.5: fails); the signed Spearman
    scores the flipped copies −1 and would pass them as "unrelated"."""
    exp = onnx_lrp.Explainer(sign_flip_reader(SIGN_SHAPE, 3, seed=0), composite="epsilon")
    x = np.random.default_rng(1).uniform(0.5, 1.5, (2,) + SIGN_SHAPE).astype(np.float32)
    results = [M.model_randomisation(exp, x, None, "lrp", seed=seed) for seed in range(4)]
    signs = [round(float(r.signed.mean()), 6) for r in results]
    assert sorted(set(signs)) == [-1.0, 1.0], "both a flipped and an unflipped copy occur"
    for r in results:
        assert r.similarity == "absolute" and r.layers == [name for name, _ in M.randomisable_layers(exp, SIGN_SHAPE)]
        np.testing.assert_allclose(r.absolute, 1.0)
        np.testing.assert_allclose(np.abs(r.signed), 1.0)
        assert r.mean > 0.5
    flipped = results[signs.index(-1.0)]
    signed = M.RandomisationResult(flipped.layers, flipped.absolute, flipped.signed, "signed")
    assert signed.mean == pytest.approx(-1.0)


def test_an_explanation_unrelated_after_randomisation_passes():
    """Q orthogonal: once W is re-initialised the target's gradient Q w'_t is as unrelated to Q w_t
    as w'_t to w_t; ±1 inputs give every feature the same |x|, so |R| shares nothing either.
    Over 256 positions an unrelated map's Spearman has standard deviation 1/16."""
    shape = (1, 16, 16)
    exp = onnx_lrp.Explainer(orthogonal_mlp(shape, 3, seed=0), composite="epsilon")
    x = np.where(np.random.default_rng(2).random((2,) + shape) < 0.5, -1.0, 1.0).astype(np.float32)
    r = M.model_randomisation(exp, x, None, "lrp", seed=0)
    assert r.correlation.shape == (2, 2)
    assert np.abs(r.absolute).max() < 0.25 and np.abs(r.signed).max() < 0.25
    assert abs(r.mean) < 0.15


def test_unknown_similarity_is_refused(mlp_exp):
    x = np.zeros((1, 4, 8, 8), np.float32)
    with pytest.raises(InvalidInput, match="'absolute'"):
        M.model_randomisation(mlp_exp, x, 0, "gradient", similarity="abs")


def test_rankdata_and_spearman():
    np.testing.assert_array_equal(M.rankdata([10, 30, 20, 20]), [1, 4, 2.5, 2.5])
    assert M.spearman([1, 2, 3, 4], [10, 100, 1000, 10000]) == pytest.approx(1.0)
    assert M.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(M.spearman([1, 1, 1], [1, 2, 3]))


def test_patch_grid_tiles_from_the_origin():
    labels, n = M.patch_grid((5, 4), 2)
    assert n == 6
    np.testing.assert_array_equal(labels[:, 0], [0, 0, 2, 2, 4])
    np.testing.assert_array_equal(labels[0], [0, 0, 1, 1])


def test_shape_mismatch_is_reported(region_exp):
    with pytest.raises(InvalidInput, match="relevance has shape"):
        M.perturbation_curves(region_exp, ones(), np.zeros((1, 2, 4, 4)), 0)
