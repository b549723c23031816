"""Metrics that say whether an explanation is faithful to the model and whether it points at the
right thing, for any ONNX model; every model evaluation runs through onnxruntime in batches.

Faithfulness (needs the model):

- :func:`region_perturbation` / :func:`perturbation_curves` — MoRF and LeRF curves, AOPC and
  the area between the two curves (Samek et al. 2017);
- :func:`faithfulness_correlation` (Bhatt et al. 2020), its subsets drawn once by
  :func:`subset_drops` and its spread over seeds estimated by :func:`faithfulness_spread`;
- :func:`model_randomisation` — the cascading parameter-randomisation sanity check
  (Adebayo et al. 2018), on absolute maps by default.

Localisation (needs a ground-truth mask):

- :func:`relevance_mass_accuracy` (Arras et al. 2022);
- :func:`pointing_game` (Zhang et al. 2018).

Conventions. Relevance has the shape of the input ``x`` (N, ...). Maps are per-sample relevance
summed over the channel axis (axis 1 of an (N, C, ...) input; a flat (N, F) input has no channel
axis), see :func:`relevance_map`. Masks and patches live on that map. "Removing" a feature sets it,
in every channel, to a baseline: a number, ``"mean"`` (the per-channel mean of the sample) or an
array shaped like one sample. Model outputs are those the explainer explains (logits when a
trailing softmax was stripped); the target is resolved once on the unperturbed input.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..attribution import Attributor, _fill_values, attribute, attributor, resolve_method
from ..errors import InvalidInput
from ..names import did_you_mean

AUTO = "auto"


# --- maps, masks and patches ---------------------------------------------------------------

def channel_axis_of(ndim: int, channel_axis=AUTO) -> int | None:
    """Axis of an (N, ...) array summed into a map: 1 for rank ≥ 3, None for (N, F)."""
    if channel_axis == AUTO:
        return 1 if ndim >= 3 else None
    if channel_axis is not None and not 1 <= int(channel_axis) < ndim:
        raise InvalidInput(f"channel_axis {channel_axis!r} is out of range for rank-{ndim} inputs (N, ...); give "
                           "an axis from 1 to ndim-1, or None for inputs without channels")
    return channel_axis


def relevance_map(relevance: np.ndarray, channel_axis=AUTO) -> np.ndarray:
    """Relevance summed over the channel axis, float64 (N, *spatial)."""
    relevance = np.asarray(relevance, np.float64)
    axis = channel_axis_of(relevance.ndim, channel_axis)
    return relevance if axis is None else relevance.sum(axis=axis)


def _spatial_shape(x_shape: tuple, channel_axis) -> tuple:
    axis = channel_axis_of(len(x_shape), channel_axis)
    return tuple(d for i, d in enumerate(x_shape) if i != axis)[1:]


def _expand_map(mask_map: np.ndarray, x_ndim: int, channel_axis) -> np.ndarray:
    """A (B, *spatial) boolean map broadcastable to (B, ...) inputs."""
    axis = channel_axis_of(x_ndim, channel_axis)
    return mask_map if axis is None else np.expand_dims(mask_map, axis)


def _check_mask(mask, relevance_maps: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    spatial = relevance_maps.shape[1:]
    if mask.shape == spatial:
        mask = np.broadcast_to(mask, relevance_maps.shape)
    if mask.shape != relevance_maps.shape:
        raise InvalidInput(f"mask of shape {mask.shape} does not match the relevance maps {spatial} (one sample) "
                           f"or {relevance_maps.shape} (the batch)")
    return mask.astype(bool)


def patch_grid(spatial: tuple, patch) -> tuple[np.ndarray, int]:
    """Label every position of a map with the id of its patch (patches tile the map from the
    origin; the last row/column of patches may be smaller). Returns (labels, number of patches)."""
    sizes = tuple(int(p) for p in np.atleast_1d(patch))
    if len(sizes) == 1:
        sizes = sizes * len(spatial)
    if len(sizes) != len(spatial) or any(p < 1 for p in sizes):
        raise InvalidInput(f"patch {patch!r} must be a positive int or one per map axis {spatial}")
    counts = [-(-d // p) for d, p in zip(spatial, sizes)]
    index = [np.arange(d) // p for d, p in zip(spatial, sizes)]
    labels = np.zeros(spatial, np.int64)
    for ax, idx in enumerate(index):
        stride = int(np.prod(counts[ax + 1:], dtype=np.int64))
        shape = [1] * len(spatial)
        shape[ax] = -1
        labels = labels + idx.reshape(shape) * stride
    return labels, int(np.prod(counts, dtype=np.int64))


def patch_relevance(maps: np.ndarray, labels: np.ndarray, n_patches: int) -> np.ndarray:
    """Sum of each patch's relevance, (N, n_patches)."""
    flat = labels.reshape(-1)
    return np.stack([np.bincount(flat, weights=m.reshape(-1), minlength=n_patches) for m in maps])


def patch_order(scores: np.ndarray, order: str, rng: np.random.Generator) -> np.ndarray:
    """Patch indices, most relevant first (``morf``) or least relevant first (``lerf``); ties are
    broken by a seeded random permutation, not by position."""
    if order not in ("morf", "lerf"):
        raise InvalidInput(f"order {order!r} is not known; choose 'morf' (most relevant first) or 'lerf'")
    keyed = -scores if order == "morf" else scores
    out = np.empty(scores.shape, np.int64)
    for i, row in enumerate(keyed):
        perm = rng.permutation(len(row))
        out[i] = perm[np.argsort(row[perm], kind="stable")]
    return out


# --- region perturbation --------------------------------------------------------------------

@dataclass
class PerturbationCurves:
    """Target outputs while patches are removed in relevance order.

    Attributes
    ----------
    fraction : (steps+1,) share of the patches removed at each point (0 first)
    morf, lerf : (N, steps+1) target output after removing the most / least relevant patches first
    """

    fraction: np.ndarray
    morf: np.ndarray
    lerf: np.ndarray

    @property
    def aopc_morf(self) -> np.ndarray:
        return aopc(self.morf)

    @property
    def aopc_lerf(self) -> np.ndarray:
        return aopc(self.lerf)

    @property
    def area_between(self) -> np.ndarray:
        """MoRF−LeRF area: mean over the steps of (LeRF curve − MoRF curve) = AOPC_MoRF − AOPC_LeRF."""
        return self.aopc_morf - self.aopc_lerf


def aopc(curves: np.ndarray) -> np.ndarray:
    """Area over the perturbation curve (Samek et al. 2017): ``1/(L+1) Σ_{k=0..L} f(x⁽⁰⁾) − f(x⁽ᵏ⁾)``
    per sample, for curves (N, L+1) of the target output."""
    curves = np.asarray(curves, np.float64)
    return (curves[:, :1] - curves).mean(axis=1)


def perturbation_curves(model, x, relevance, target=None, *, patch=8, steps: int = 16, fraction: float = 1.0,
                        baseline="mean", orders=("morf", "lerf"), batch_size: int | None = None, seed: int = 0,
                        channel_axis=AUTO) -> PerturbationCurves:
    """Region perturbation (Samek, Binder, Montavon, Lapuschkin, Müller 2017, "Evaluating the
    visualization of what a deep neural network has learned", IEEE TNNLS 28(11)).

    The relevance map is tiled into patches of ``patch`` × ``patch`` (pixel flipping is
    ``patch=1``); patches are removed (set to ``baseline`` in every channel) one group at a time
    in order of their summed relevance — most relevant first (MoRF) and least relevant first
    (LeRF) — and the target output is recorded after each of ``steps`` steps, which together
    remove ``fraction`` of the patches. A faithful explanation makes the MoRF curve fall fast
    (high AOPC) and the LeRF curve stay high. All perturbed copies are stacked and run through
    onnxruntime ``batch_size`` at a time.

    Parameters
    ----------
    model : Explainer, Attributor, path or ModelProto
    x : (N, ...) float input; relevance : same shape
    target : None (predicted), int or N ints
    patch : int or tuple, patch size on the map
    steps : int, points on each curve after the unperturbed one
    fraction : float in (0, 1], share of the patches removed by the last step
    baseline : number, "mean" or array like one sample
    seed : int, tie breaking among equally relevant patches

    Returns
    -------
    PerturbationCurves
    """
    a = attributor(model)
    x, relevance, target = _prepare(a, x, relevance, target, batch_size)
    if steps < 1 or not 0 < fraction <= 1:
        raise InvalidInput(f"steps must be ≥ 1 and fraction in (0, 1]; got steps={steps!r}, fraction={fraction!r}")
    maps = relevance_map(relevance, channel_axis)
    labels, n_patches = patch_grid(maps.shape[1:], patch)
    counts = np.round(np.linspace(0, fraction * n_patches, steps + 1)).astype(np.int64)
    fill = _fill_values(x, baseline)
    scores = patch_relevance(maps, labels, n_patches)
    rng = np.random.default_rng(seed)
    curves = {}
    for order in orders:
        ranking = patch_order(scores, order, rng)
        curves[order] = _perturbed_scores(a, x, fill, target, labels, ranking, counts, batch_size, channel_axis)
    frac = counts / n_patches
    return PerturbationCurves(frac, curves.get("morf"), curves.get("lerf"))


def region_perturbation(model, x, relevance, target=None, *, order: str = "morf", **options) -> np.ndarray:
    """One perturbation curve (N, steps+1), ``order`` ``"morf"`` or ``"lerf"``; see
    :func:`perturbation_curves` (Samek et al. 2017) for the options."""
    curves = perturbation_curves(model, x, relevance, target, orders=(order,), **options)
    return curves.morf if order == "morf" else curves.lerf


def _perturbed_scores(a: Attributor, x, fill, target, labels, ranking, counts, batch_size, channel_axis):
    """Target outputs of every sample with the first ``counts[k]`` patches of its ranking removed,
    for every k; the copies of a sample are generated and run a chunk at a time."""
    step = a.chunk(batch_size)
    out = np.empty((len(x), len(counts)), np.float64)
    for i in range(len(x)):
        rank_of_patch = np.empty(ranking.shape[1], np.int64)
        rank_of_patch[ranking[i]] = np.arange(ranking.shape[1])
        position_rank = rank_of_patch[labels]  # rank of the patch each map position belongs to
        for start in range(0, len(counts), step):
            ks = counts[start:start + step]
            removed = position_rank[None] < ks.reshape((-1,) + (1,) * labels.ndim)
            removed = _expand_map(removed, x.ndim, channel_axis)
            batch = np.where(removed, fill[i:i + 1], x[i:i + 1]).astype(np.float32)
            out[i, start:start + len(ks)] = a.scores(batch, np.full(len(ks), target[i]), step)
    return out


# --- faithfulness correlation -------------------------------------------------------------

#: random subsets per sample: the value's spread over seeds is ≈ 1/√runs per sample (≈ 0.03 for
#: the mean of EfficientNet-Lite0's two images at 512 against 0.12-0.19 at 32), small next to the
#: differences between methods (docs/evaluation.md, tools/faithfulness_spread.py)
FAITHFULNESS_RUNS = 512


@dataclass
class SubsetDrops:
    """Random patch subsets and the drop of the target output when each is removed. The drops do
    not depend on the explanation, so one draw serves every method compared on the same samples.

    Attributes
    ----------
    labels : patch id of every map position (see :func:`patch_grid`)
    inside : (N, runs, n_patches) bool, the patches of each subset
    drops : (N, runs) f(x) − f(x with the subset set to the baseline)
    """

    labels: np.ndarray
    inside: np.ndarray
    drops: np.ndarray

    def attributed(self, relevance, channel_axis=AUTO) -> np.ndarray:
        """Σ_{i∈S} R_i for every subset S, (N, runs)."""
        maps = relevance_map(relevance, channel_axis)
        if maps.shape[0] != self.inside.shape[0] or maps.shape[1:] != self.labels.shape:
            raise InvalidInput(f"relevance maps of shape {maps.shape} do not match the subsets drawn for "
                               f"{self.inside.shape[0]} samples with maps {self.labels.shape}")
        scores = patch_relevance(maps, self.labels, self.inside.shape[2])
        return np.einsum("nrp,np->nr", self.inside, scores)


def subset_drops(model, x, target=None, *, patch=8, subset: int | float = 0.1, runs: int = FAITHFULNESS_RUNS,
                 baseline="mean", batch_size: int | None = None, seed: int = 0, channel_axis=AUTO) -> SubsetDrops:
    """Draw ``runs`` random subsets of ``subset`` patches per sample (that share of them when a
    float < 1) and measure the drop of the target output when each is removed; see
    :func:`faithfulness_correlation`."""
    a = attributor(model)
    x = a.check(x)
    target = a.targets(x, target, batch_size)
    labels, n_patches = patch_grid(_spatial_shape(x.shape, channel_axis), patch)
    size = int(round(subset * n_patches)) if isinstance(subset, float) and subset < 1 else int(subset)
    if not 1 <= size <= n_patches or runs < 2:
        raise InvalidInput(f"subset must select between 1 and {n_patches} patches and runs must be ≥ 2; got "
                           f"subset={subset!r} ({size} patches), runs={runs!r}")
    fill = _fill_values(x, baseline)
    reference = a.scores(x, target, batch_size)
    rng = np.random.default_rng(seed)
    step = a.chunk(batch_size)
    inside = np.zeros((len(x), runs, n_patches), bool)
    drops = np.empty((len(x), runs), np.float64)
    for i in range(len(x)):
        chosen = np.stack([rng.choice(n_patches, size, replace=False) for _ in range(runs)])
        inside[i, np.arange(runs)[:, None], chosen] = True
        for start in range(0, runs, step):
            removed = _expand_map(inside[i, start:start + step][:, labels], x.ndim, channel_axis)
            batch = np.where(removed, fill[i:i + 1], x[i:i + 1]).astype(np.float32)
            drops[i, start:start + len(batch)] = reference[i] - a.scores(batch, np.full(len(batch), target[i]), step)
    return SubsetDrops(labels, inside, drops)


def faithfulness_correlation(model, x, relevance, target=None, *, patch=8, subset: int | float = 0.1,
                             runs: int = FAITHFULNESS_RUNS, baseline="mean", batch_size: int | None = None,
                             seed: int = 0, channel_axis=AUTO, drops: SubsetDrops | None = None) -> np.ndarray:
    """Faithfulness correlation (Bhatt, Weller, Moura 2020, "Evaluating and aggregating
    feature-based model explanations", IJCAI).

    For ``runs`` random subsets S of the patches (``subset`` patches each, or that share of them
    when a float < 1), the Pearson correlation between the relevance inside S, Σ_{i∈S} R_i, and
    the drop of the target output when S is removed, f(x) − f(x_{S←baseline}). One value per
    sample in [−1, 1]; NaN when either side is constant over the runs (no ranking to correlate).
    An exact linear attribution of a linear model (R = w ⊙ (x − baseline)) scores 1.

    The value depends on the subsets drawn: :func:`faithfulness_spread` estimates how far it
    would move with another seed. ``drops`` (from :func:`subset_drops`) reuses subsets already
    measured (then the subset options are theirs and only ``relevance`` is read).
    """
    if drops is None:
        a = attributor(model)
        x, relevance, target = _prepare(a, x, relevance, target, batch_size)
        drops = subset_drops(a, x, target, patch=patch, subset=subset, runs=runs, baseline=baseline,
                             batch_size=batch_size, seed=seed, channel_axis=channel_axis)
    attributed = drops.attributed(relevance, channel_axis)
    return np.array([_pearson(s, d) for s, d in zip(attributed, drops.drops)])


def faithfulness_spread(relevance, drops: SubsetDrops, *, resamples: int = 1000, seed: int = 0,
                        channel_axis=AUTO) -> np.ndarray:
    """Bootstrap estimate of the standard deviation of each sample's faithfulness correlation over
    draws of its subsets (Efron & Tibshirani 1993): the subsets are resampled with replacement
    ``resamples`` times and the correlation recomputed; no model evaluation. NaN where the
    correlation is undefined."""
    attributed = drops.attributed(relevance, channel_axis)
    runs = attributed.shape[1]
    pick = np.random.default_rng(seed).integers(0, runs, (resamples, runs))
    out = np.full(len(attributed), np.nan)
    for i, (s, d) in enumerate(zip(attributed, drops.drops)):
        if np.isnan(_pearson(s, d)):
            continue
        values = _pearson_rows(s[pick], d[pick])
        values = values[np.isfinite(values)]
        out[i] = values.std(ddof=1) if len(values) > 1 else np.nan
    return out


def _pearson_rows(a, b) -> np.ndarray:
    """Pearson correlation of each row pair; NaN for a constant row."""
    da, db = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    na, nb = np.sqrt((da * da).sum(axis=1)), np.sqrt((db * db).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((na > 0) & (nb > 0), (da * db).sum(axis=1) / (na * nb), np.nan)


def _pearson(a, b) -> float:
    """Pearson correlation; NaN when either side is constant (up to float rounding)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    da, db = a - a.mean(), b - b.mean()
    na, nb = np.sqrt((da * da).sum()), np.sqrt((db * db).sum())
    if na <= 1e-12 * np.sqrt(len(a)) * np.abs(a).max(initial=0) or nb <= 1e-12 * np.sqrt(len(b)) * np.abs(b).max(
            initial=0) or na == 0 or nb == 0:
        return float("nan")
    return float((da * db).sum() / (na * nb))


# --- localisation ---------------------------------------------------------------------------

def relevance_mass_accuracy(relevance, mask, *, positive_only: bool = True, channel_axis=AUTO) -> np.ndarray:
    """Relevance mass accuracy (Arras, Osman, Samek 2022, "CLEVR-XAI: a benchmark dataset for the
    ground truth evaluation of neural network explanations", Information Fusion 81).

    ``R_within / R_total``: the share of the map's relevance inside the ground-truth ``mask``
    (shape of one map, or one per sample). As in the paper, only positive relevance counts
    (``positive_only=False`` uses the signed sums). 1 means all relevance lies on the object.
    NaN for a sample whose total is 0.
    """
    maps = relevance_map(relevance, channel_axis)
    mask = _check_mask(mask, maps)
    if positive_only:
        maps = np.maximum(maps, 0.0)
    axes = tuple(range(1, maps.ndim))
    within, total = (maps * mask).sum(axis=axes), maps.sum(axis=axes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total != 0, within / np.where(total != 0, total, 1), np.nan)


def pointing_game(relevance, mask, *, tolerance: float = 0.0, channel_axis=AUTO) -> np.ndarray:
    """Pointing game (Zhang, Bargal, Lin, Brandt, Shen, Sclaroff 2018, "Top-down neural attention
    by excitation backprop", IJCV 126).

    A hit when the map's maximum lies on the ``mask`` or within ``tolerance`` map positions of it
    (Euclidean; the paper uses 15 pixels at 224×224). Returns a boolean per sample; the
    accuracy is its mean. Ties for the maximum take the first position in row-major order.
    """
    maps = relevance_map(relevance, channel_axis)
    mask = _check_mask(mask, maps)
    hits = np.zeros(len(maps), bool)
    for i, (m, truth) in enumerate(zip(maps, mask)):
        peak = np.array(np.unravel_index(np.argmax(m), m.shape))
        if truth[tuple(peak)]:
            hits[i] = True
        elif tolerance > 0 and truth.any():
            where = np.argwhere(truth)
            hits[i] = bool(np.sqrt(((where - peak) ** 2).sum(axis=1)).min() <= tolerance)
    return hits


# --- model randomisation --------------------------------------------------------------------

#: how :class:`RandomisationResult` measures similarity (see :func:`model_randomisation`)
SIMILARITIES = ("absolute", "signed")


@dataclass
class RandomisationResult:
    """Spearman rank correlation between the explanation of the trained model and of the model
    with its parameters re-initialised from the output layer down to each layer in ``layers``.

    Attributes
    ----------
    layers : node names, output side first; entry k is the deepest layer randomised at step k
    absolute : (len(layers), N) Spearman correlation of the absolute maps |R|
    signed : (len(layers), N) Spearman correlation of the signed maps
    similarity : which of the two :attr:`correlation`, :attr:`per_layer` and :attr:`mean` read
    """

    layers: list[str]
    absolute: np.ndarray
    signed: np.ndarray
    similarity: str = "absolute"
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        _check_similarity(self.similarity)

    @property
    def correlation(self) -> np.ndarray:
        """(len(layers), N) correlations of the chosen :attr:`similarity`."""
        return self.absolute if self.similarity == "absolute" else self.signed

    @property
    def per_layer(self) -> np.ndarray:
        """Mean over the samples at each step (NaN where every explanation was constant)."""
        c = self.correlation
        valid = np.isfinite(c)
        return np.where(valid.any(axis=1), np.where(valid, c, 0).sum(axis=1) / np.maximum(valid.sum(axis=1), 1),
                        np.nan)

    @property
    def mean(self) -> float:
        """The mean correlation over all steps and samples: near 0 for an explanation that
        depends on the parameters, 1 for one that ignores them."""
        valid = self.correlation[np.isfinite(self.correlation)]
        return float(valid.mean()) if valid.size else float("nan")


def _check_similarity(similarity: str) -> None:
    if similarity not in SIMILARITIES:
        raise InvalidInput(f"randomisation similarity {similarity!r} is not known; choose 'absolute' (Spearman of "
                           "|R|, the default) or 'signed'")


def randomisable_layers(model, sample_shape) -> list[tuple[str, list[str]]]:
    """(node name, names of its float initializers) of every convolution and dense layer of the
    canonized model, in topological order (input side first)."""
    from ..ops import base as cat
    from ..ops.registry import handler_for

    explainer = attributor(model).explainer
    g = explainer.graph(tuple(sample_shape))
    init_names = {t.name for t in explainer.model.graph.initializer}
    layers = []
    for node in g.topo_nodes():
        handler = handler_for(node, g)
        if handler.category_of(node, g) not in (cat.CONV, cat.DENSE, cat.ATTENTION_PROJECTION):
            continue
        params = [t for t in node.input if t in init_names and t not in g.relevant]
        if params:
            layers.append((node.name, params))
    return layers


def model_randomisation(model, x, target=None, method="gradient", *, layers=None, seed: int = 0,
                        similarity: str = "absolute", batch_size: int | None = None, channel_axis=AUTO,
                        method_options: dict | None = None) -> RandomisationResult:
    """Cascading model-parameter randomisation (Adebayo, Gilmer, Muelly, Goodfellow, Hardt, Kim
    2018, "Sanity checks for saliency maps", NeurIPS).

    Starting at the output, the weights and biases of one convolution/dense layer after another
    are replaced by seeded Gaussian noise with the standard deviation of the original tensor
    (cumulatively: step k has the last k layers randomised), the model is re-compiled and
    explained with ``method`` for the same targets, and each explanation map is compared with the
    original by Spearman rank correlation. An explanation that still looks the same once the
    model is random does not explain the model; the ``random`` method (independent of the model)
    scores 1 at every step. A constant explanation map (e.g. all zero once a ReLU after the
    randomised output layer cuts the target off) has no ranking: its correlation is NaN, left
    out of :attr:`RandomisationResult.mean` and counted in the notes.

    Similarity is measured on the absolute maps |R| by default (Adebayo et al.'s absolute-value
    variant and Quantus' default): an explanation that keeps its shape but takes the sign of the
    randomised target output — a sign-flipped copy, which z⁺-type LRP rules produce (Sixt, Granz,
    Landgraf 2020, "When explanations lie", ICML) — scores near +1 as the copy it is, where the
    signed correlation would score near −1 and pass for "dissimilar" (averaged over samples whose
    signs differ, even ≈ 0). Both are always computed; ``similarity`` picks which one
    :attr:`RandomisationResult.correlation` and its means read.

    Parameters
    ----------
    layers : None (every layer), int k (k steps spread evenly along the cascade, the last one
        with every layer randomised) or list of node names to report after.
    similarity : ``"absolute"`` (Spearman of |map|, the default) or ``"signed"``.
    seed : int
        Seeds the re-initialisation (a method's own seed goes in ``method_options``).
    method, method_options : as :func:`onnx_lrp.attribution.attribute` (``method_options`` are its
        keyword options, e.g. ``{"composite": "epsilon"}``).

    Returns
    -------
    RandomisationResult
    """
    from onnx import numpy_helper

    from ..explainer import Explainer
    from ..weights import materialize

    a = attributor(model)
    x = a.check(x)
    target = a.targets(x, target, batch_size)
    explainer = a.explainer
    cascade = list(reversed(randomisable_layers(a, x.shape[1:])))
    if not cascade:
        raise InvalidInput(f"{explainer.label!r} has no convolution or dense layer with constant weights to "
                           "randomise")
    checkpoints = _checkpoints(cascade, layers)
    resolve_method(method)
    _check_similarity(similarity)
    method_options = dict(method_options or {})
    original = _ranked_maps(attribute(a, x, target, method, batch_size, **method_options), channel_axis)
    rng = np.random.default_rng(seed)
    proto = materialize(explainer.model)  # ordinary tensors: the copy is edited, not the original weights
    inits = {t.name: t for t in proto.graph.initializer}
    correlations, names = {kind: [] for kind in SIMILARITIES}, []
    for k, (node_name, params) in enumerate(cascade):
        for name in params:
            old = numpy_helper.to_array(inits[name])
            new = (rng.standard_normal(old.shape) * float(old.std())).astype(old.dtype)
            inits[name].CopyFrom(numpy_helper.from_array(new, name))
        if k not in checkpoints:
            continue
        # an Attributor of its own, not attributor()'s cache: that cache's values hold their
        # explainer, so every randomised model (and its sessions) would stay in memory
        randomised = Attributor(Explainer(proto, composite=explainer.composite, providers=explainer.providers,
                                          output=explainer.output_name, input_name=explainer.input_name))
        maps = _ranked_maps(attribute(randomised, x, target, method, batch_size, **method_options), channel_axis)
        del randomised
        for kind in SIMILARITIES:
            correlations[kind].append([_pearson(o, r) for o, r in zip(original[kind], maps[kind])])
        names.append(node_name)
    corr = {kind: np.array(values, np.float64) for kind, values in correlations.items()}
    notes = [f"{len(cascade)} layers in the cascade, output first"]
    constant = int(np.isnan(corr[similarity]).sum())
    if constant:
        notes.append(f"{constant} of {corr[similarity].size} explanations of a randomised model were constant (e.g. "
                     "the target output is cut off by a ReLU): no ranking, left out as NaN")
    return RandomisationResult(names, corr["absolute"], corr["signed"], similarity, notes)


def _checkpoints(cascade, layers) -> set[int]:
    n = len(cascade)
    if layers is None:
        return set(range(n))
    if isinstance(layers, (int, np.integer)):
        if layers < 1:
            raise InvalidInput(f"layers must be ≥ 1, got {layers!r}")
        return {int(round(v)) for v in np.linspace(n - 1, 0, min(int(layers), n))[::-1]}
    names = [name for name, _ in cascade]
    missing = [name for name in layers if name not in names]
    if missing:
        raise InvalidInput(f"layers {missing!r}{did_you_mean(missing[0], names)} are not randomisable layers; "
                           f"choose from {names!r}")
    return {names.index(name) for name in layers}


def _ranked_maps(relevance, channel_axis) -> dict[str, np.ndarray]:
    """Per-sample ranks of the flattened map and of its absolute value (average ranks for ties),
    float64 (N, F) each: Pearson on these is Spearman's rank correlation."""
    maps = relevance_map(relevance, channel_axis).reshape(len(relevance), -1)
    return {"absolute": np.stack([rankdata(np.abs(m)) for m in maps]),
            "signed": np.stack([rankdata(m) for m in maps])}


def rankdata(values) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (as scipy.stats.rankdata, method 'average')."""
    values = np.asarray(values).reshape(-1)
    order = np.argsort(values, kind="stable")
    sorted_vals = values[order]
    new_group = np.concatenate([[True], sorted_vals[1:] != sorted_vals[:-1]])
    group = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    ends = np.append(starts[1:], len(values))
    avg = (starts + ends + 1) / 2.0
    ranks = np.empty(len(values), np.float64)
    ranks[order] = avg[group]
    return ranks


def spearman(a, b) -> float:
    """Spearman's rank correlation of two arrays (NaN when either is constant)."""
    return _pearson(rankdata(a), rankdata(b))


# --- shared -------------------------------------------------------------------------------

def _prepare(a: Attributor, x, relevance, target, batch_size):
    x = a.check(x)
    relevance = np.asarray(relevance)
    if relevance.shape != x.shape:
        raise InvalidInput(f"relevance has shape {relevance.shape}, the input {x.shape}; they must match")
    return x, relevance, a.targets(x, target, batch_size)
