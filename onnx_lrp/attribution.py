"""Baseline attributions, compiled the same way as LRP.

Gradient-based methods reuse the LRP compiler: a composite that gives every node the
:class:`~onnx_lrp.rules.Gradient` rule turns the relevance sweep into the plain backward pass
(every op handler has a vector-Jacobian product), and seeding with the bare one-hot of the target
(``seed_times_output=False``) makes it the gradient of the target output. The result is one
onnxruntime graph per input shape, like the LRP explainer. Black-box methods (occlusion) run the
model's forward graph. Stacked evaluations (the steps of Integrated Gradients, the noisy copies of
SmoothGrad, the windows of occlusion) go through onnxruntime in chunks of ``batch_size``.

Entry point: :func:`attribute`; the method names are the keys of :data:`METHODS`.

>>> import onnx_lrp
>>> from onnx_lrp.attribution import attribute
>>> exp = onnx_lrp.Explainer("models/cifar10_cnn.onnx")
>>> r = attribute(exp, x, target=3, method="integrated_gradients", steps=32)   # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import composites
from .compile import Compiled, compile_explainer
from .composites import Composite
from .errors import InvalidInput
from .names import did_you_mean
from .executor import make_session, run_batched
from .explainer import Explainer, _targets
from .rules import Gradient
from .weights import materialize

#: Samples (or stacked steps) per onnxruntime call unless a method is told otherwise.
DEFAULT_BATCH = 32


class GradientComposite(Composite):
    """Every node gets the :class:`~onnx_lrp.rules.Gradient` rule: relevance becomes the gradient."""

    name = "gradient"

    def __init__(self):
        super().__init__()
        self._rule = Gradient()

    def rule_for(self, node, category, is_first):
        return self._rule


class Attributor:
    """The compiled programs one model needs for attributions: its forward pass (target scores)
    and the gradient of a target output, one onnxruntime session per input shape, kept in the
    explainer's cache of recent shapes (:attr:`Explainer.sessions`, bounded by its ``cache_size``).

    Parameters
    ----------
    explainer : Explainer
        Supplies the canonized model (softmax stripped: logits are explained), the input name,
        the providers and the per-shape graphs. Get one with :func:`attributor`.
    """

    def __init__(self, explainer: Explainer):
        self.explainer = explainer
        self._forward = None
        self._lrp: dict[Composite, Explainer] = {}

    def close(self) -> None:
        """Release the forward session and the explainers of other composites."""
        self._forward = None
        for sibling in self._lrp.values():
            sibling.close()
        self._lrp.clear()

    # --- model facts ---------------------------------------------------------------------
    @property
    def input_name(self) -> str:
        return self.explainer.input_name

    def check(self, x) -> np.ndarray:
        return self.explainer._check_input(x)

    def chunk(self, batch_size: int | None) -> int:
        """Rows per onnxruntime call: a model with a fixed batch dimension dictates it."""
        fixed = self.explainer._fixed_batch()
        return fixed or max(1, int(batch_size or DEFAULT_BATCH))

    # --- forward ---------------------------------------------------------------------------
    def forward(self, x: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """The explained output (logits when a softmax was stripped), flattened to (N, C)."""
        session = self._forward
        if session is None:
            with self.explainer.sessions.lock:
                if self._forward is None:
                    self._forward = make_session(self.explainer.model, self.explainer.providers)
                session = self._forward
        x = _as_input(x)
        out = self._run(session, [self.explainer.output_name], {self.input_name: x}, batch_size)[0]
        return out.reshape(len(x), -1)

    def scores(self, x: np.ndarray, target: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """The output of class ``target[i]`` for sample ``x[i]`` (float64)."""
        out = self.forward(x, batch_size)
        return out[np.arange(len(out)), np.asarray(target)].astype(np.float64)

    def targets(self, x: np.ndarray, target=None, batch_size: int | None = None) -> np.ndarray:
        """Resolve ``target`` (None / -1: the predicted class) to one int per sample."""
        arr = _targets(target, len(x), self._num_classes(x))
        if (arr < 0).any():
            predicted = self.forward(x, batch_size).argmax(axis=1)
            arr = np.where(arr < 0, predicted, arr)
        return arr.astype(np.int64)

    def explained_shape(self, x: np.ndarray) -> tuple:
        """The shape of an attribution of ``x``: its own, or for integer data (token ids) that of the
        first floating-point tensor computed from it, the embedding output (batch on axis 0)."""
        if not np.issubdtype(np.asarray(x).dtype, np.integer):
            return tuple(x.shape)
        graph = self.explainer.graph(x.shape[1:])
        return (len(x), *graph.shape(graph.source)[1:])

    def _num_classes(self, x) -> int:
        graph = self.explainer.graph(x.shape[1:])
        return int(np.prod(graph.shape(graph.output_name)[1:], dtype=np.int64))

    # --- gradient --------------------------------------------------------------------------
    def gradient(self, x: np.ndarray, target: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """d output[target] / d x for every sample; ``target`` holds one class per sample. For integer
        data (token ids) the gradient is at the first floating-point tensor computed from it (the
        embedding output), where the explanation starts (:attr:`Explanation.sources`)."""
        x = _as_input(x)
        target = np.asarray(target, np.int64)
        compiled, session = self._gradient_program(x.shape[1:])
        return self._run(session, [compiled.relevance_name], {compiled.input_name: x, compiled.target_name: target},
                         batch_size)[0]

    def _gradient_program(self, sample_shape) -> tuple[Compiled, object]:
        e = self.explainer
        key = e._shape_key(tuple(int(d) for d in sample_shape))

        def compile_gradient(graph):
            compiled = compile_explainer(graph, GradientComposite(), seed_times_output=False, device=e.device)
            return compiled, make_session(compiled.model, e.providers)

        return e.sessions.program(key, ("gradient",), lambda: e._build_graph(key), compile_gradient)

    # --- LRP -------------------------------------------------------------------------------
    def lrp(self, composite=None, **composite_kwargs) -> Explainer:
        """The explainer itself, or a sibling with another composite (cached per composite)."""
        if composite is None and not composite_kwargs:
            return self.explainer
        e = self.explainer
        key = composites.get(composite or e.composite, **composite_kwargs)  # equal composites, one explainer
        with e.sessions.lock:
            if key not in self._lrp:
                # from the canonized model: the store keeps only the weights it reads (see Explainer)
                self._lrp[key] = Explainer(materialize(e.model), composite=key, providers=e.providers,
                                           output=e.output_name, input_name=e.input_name, cache_size=e.sessions.size)
            return self._lrp[key]

    def _run(self, session, names, inputs, batch_size=None):
        """Run ``session`` in chunks (see :func:`onnx_lrp.executor.run_batched`)."""
        n = len(inputs[self.input_name])
        return run_batched(session, names, inputs, {k: 0 for k in inputs}, n, self.chunk(batch_size),
                           self.explainer._fixed_batch(), self.explainer.label)


def _as_input(x) -> np.ndarray:
    """``x`` as the explained input takes it: float32, or integers (token ids) as they are."""
    x = np.asarray(x)
    return np.ascontiguousarray(x, dtype=None if np.issubdtype(x.dtype, np.integer) else np.float32)


def _float_input(x: np.ndarray, method: str) -> None:
    """Methods that scale, shift or occlude the input values need floating-point data."""
    if np.issubdtype(x.dtype, np.integer):
        raise InvalidInput(f"method {method!r} needs floating-point input values (it scales, shifts or occludes "
                           "them); this input holds integers (token ids): use 'lrp', 'gradient' or 'saliency', "
                           "which are given at the embedding output")


def attributor(model, **explainer_kwargs) -> Attributor:
    """An :class:`Attributor` for an Explainer (cached on it), a path or a ModelProto."""
    if isinstance(model, Attributor):
        return model
    if not isinstance(model, Explainer):
        model = Explainer(model, **explainer_kwargs)
    # kept on the explainer, not in a module-level weak-key map: the attributor refers to its
    # explainer, so such a map's values kept every key alive and no explainer was ever released
    if model._attributor is None:
        model._attributor = Attributor(model)
    return model._attributor


# --- methods ------------------------------------------------------------------------------
# Each takes (attributor, x float32 (N, ...), target int64 (N,), batch_size, **options) and
# returns the attribution, float32 shaped like x.

def gradient(a: Attributor, x, target, batch_size=None):
    """Vanilla gradient, ∂f_t/∂x (Simonyan et al. 2014, "Deep inside convolutional networks")."""
    return a.gradient(x, target, batch_size)


def saliency(a: Attributor, x, target, batch_size=None):
    """Absolute gradient |∂f_t/∂x| (Simonyan et al. 2014 saliency maps; they take the maximum over
    channels, metrics here sum over channels)."""
    return np.abs(a.gradient(x, target, batch_size))


def input_x_gradient(a: Attributor, x, target, batch_size=None):
    """x ⊙ ∂f_t/∂x (Shrikumar et al. 2016, "Not just a black box")."""
    _float_input(x, "input_x_gradient")
    return (x * a.gradient(x, target, batch_size)).astype(np.float32)


def integrated_gradients(a: Attributor, x, target, batch_size=None, steps: int = 20, baseline=0.0):
    """Integrated Gradients (Sundararajan et al. 2017, "Axiomatic attribution for deep networks").

    ``(x − x̄) ⊙ (1/n) Σ_{k=1..n} ∇f_t(x̄ + k/n·(x − x̄))``: the right Riemann sum, as Zennit's
    ``IntegratedGradients`` (``n_iter`` = ``steps``). ``baseline`` x̄ is a number or an array that
    broadcasts to one sample or to the batch. All N·n path points are stacked and run in chunks.
    """
    _float_input(x, "integrated_gradients")
    steps = _positive_int(steps, "steps")
    base = _baseline_array(x, baseline)
    alphas = np.arange(1, steps + 1, dtype=np.float64) / steps

    def point(i, k):
        return base[i] + np.float32(alphas[k]) * (x[i] - base[i])

    mean_grad = _stacked_gradient(a, x, target, steps, point, batch_size)
    return ((x - base) * mean_grad).astype(np.float32)


def smoothgrad(a: Attributor, x, target, batch_size=None, samples: int = 20, noise: float = 0.1,
               seed: int = 0):
    """SmoothGrad (Smilkov et al. 2017, "SmoothGrad: removing noise by adding noise").

    The mean gradient over ``samples`` copies of x with Gaussian noise of standard deviation
    ``noise · (max(x) − min(x))`` per sample; as in Zennit's ``SmoothGrad`` the last copy is
    noise-free, so ``samples=1`` is the gradient. Noise is drawn from ``numpy.random.default_rng(seed)``.
    """
    _float_input(x, "smoothgrad")
    samples = _positive_int(samples, "samples")
    axes = tuple(range(1, x.ndim))
    std = (noise * (x.max(axis=axes, keepdims=True) - x.min(axis=axes, keepdims=True))).astype(np.float32)
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal((len(x), max(samples - 1, 0)) + x.shape[1:], dtype=np.float32)

    def point(i, k):
        return x[i] if k == samples - 1 else x[i] + eps[i, k] * std[i]

    return _stacked_gradient(a, x, target, samples, point, batch_size).astype(np.float32)


def occlusion(a: Attributor, x, target, batch_size=None, window: int | tuple = 8, stride: int | tuple | None = None,
              baseline=0.0, axes: tuple | None = None):
    """Occlusion (Zeiler & Fergus 2014, "Visualizing and understanding convolutional networks").

    A window slides over the ``axes`` of one sample (default: all but the channel axis, i.e. H, W
    of an NCHW image; the only axis of a flat input), every channel at once, and replaces the
    values under it by ``baseline`` (a number, ``"mean"`` = per-channel mean of the sample, or an
    array like one sample). A feature's attribution is the drop of the target output,
    f_t(x) − f_t(x_occluded), averaged over the windows that cover it (as Captum's ``Occlusion``).
    Windows also start at ``size − window`` so that the far edge is covered. Black-box: only the
    forward pass runs, ``batch_size`` occluded copies per onnxruntime call.
    """
    _float_input(x, "occlusion")
    sample = x.shape[1:]
    axes = _spatial_axes(sample, axes)
    window = _per_axis(window, axes, sample, "window")
    stride = _per_axis(stride if stride is not None else window, axes, sample, "stride")
    slices = _window_slices(sample, axes, window, stride)
    fill = _fill_values(x, baseline)
    reference = a.scores(x, target, batch_size)
    result = np.zeros(x.shape, np.float64)
    count = np.zeros(sample, np.float64)
    for sl in slices:
        count[sl] += 1.0
    step = a.chunk(batch_size)
    for i in range(len(x)):
        for start in range(0, len(slices), step):
            chunk = slices[start:start + step]
            batch = np.repeat(x[i:i + 1], len(chunk), axis=0)
            for j, sl in enumerate(chunk):
                batch[j][sl] = fill[i][sl]
            drops = reference[i] - a.scores(batch, np.full(len(chunk), target[i]), step)
            for drop, sl in zip(drops, chunk):
                result[i][sl] += drop
    return (result / np.maximum(count, 1.0)).astype(np.float32)


def random(a: Attributor, x, target, batch_size=None, seed: int = 0):
    """Random attribution, standard normal per feature from ``numpy.random.default_rng(seed)``:
    the floor every metric should rank an explanation above. For integer data (token ids) it has
    the shape of the embedding output, where the other methods are given."""
    return np.random.default_rng(seed).standard_normal(a.explained_shape(x), dtype=np.float32)


def lrp(a: Attributor, x, target, batch_size=None, composite=None, **composite_kwargs):
    """Layer-wise Relevance Propagation with the explainer's composite or ``composite``
    (Bach et al. 2015, "On pixel-wise explanations for non-linear classifier decisions")."""
    return a.lrp(composite, **composite_kwargs).explain(x, target, batch_size=batch_size).relevance


@dataclass(frozen=True)
class Method:
    """A registered attribution method: ``fn(attributor, x, target, batch_size, **options)``."""

    name: str
    fn: Callable
    uses_gradient: bool

    @property
    def doc(self) -> str:
        return (self.fn.__doc__ or "").strip().splitlines()[0]


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("lrp", lrp, False),
    Method("gradient", gradient, True),
    Method("saliency", saliency, True),
    Method("input_x_gradient", input_x_gradient, True),
    Method("integrated_gradients", integrated_gradients, True),
    Method("smoothgrad", smoothgrad, True),
    Method("occlusion", occlusion, False),
    Method("random", random, False),
)}


def attribute(model, x, target=None, method: str | Callable = "gradient", batch_size: int | None = None,
              **options) -> np.ndarray:
    """Attribution of every input feature of ``x`` for ``target`` with ``method``.

    Parameters
    ----------
    model : Explainer, Attributor, path or onnx.ModelProto
        An Explainer is reused with its compiled sessions (and its composite for ``"lrp"``).
    x : array (N, ...) float
    target : None (predicted class), int or N ints
        Resolved once on ``x``: every step of Integrated Gradients / SmoothGrad explains the same class.
    method : str or callable
        A name in :data:`METHODS` (``lrp``, ``gradient``, ``saliency``, ``input_x_gradient``,
        ``integrated_gradients``, ``smoothgrad``, ``occlusion``, ``random``) or a callable with the
        signature ``fn(attributor, x, target, batch_size, **options)``.
    batch_size : int, optional
        Rows per onnxruntime call (stacked steps/windows included); default 32.
    **options
        The method's own: ``composite`` (lrp), ``steps``/``baseline`` (integrated_gradients),
        ``samples``/``noise``/``seed`` (smoothgrad), ``window``/``stride``/``baseline``/``axes``
        (occlusion), ``seed`` (random).

    Returns
    -------
    ndarray float32, the shape of ``x`` (for integer data, token ids: the shape of the embedding
    output where the explanation starts; methods that change input values refuse such data)
    """
    a = attributor(model)
    fn = resolve_method(method).fn
    x = a.check(x)
    target = a.targets(x, target, batch_size)
    try:
        return np.asarray(fn(a, x, target, batch_size, **options), dtype=np.float32)
    except TypeError as exc:
        name = method if isinstance(method, str) else getattr(method, "__name__", repr(method))
        raise InvalidInput(f"method {name!r}: {exc}; see onnx_lrp.attribution.METHODS[{name!r}].fn for its "
                           "options") from exc


def resolve_method(method) -> Method:
    if callable(method) and not isinstance(method, str):
        return method if isinstance(method, Method) else Method(getattr(method, "__name__", "custom"), method, False)
    if method not in METHODS:
        raise InvalidInput(f"unknown attribution method {method!r}{did_you_mean(method, METHODS)}; choose one of "
                           f"{list(METHODS)!r}")
    return METHODS[method]


# --- helpers ------------------------------------------------------------------------------

def _stacked_gradient(a: Attributor, x, target, n: int, point, batch_size) -> np.ndarray:
    """Mean over k < n of the gradient at ``point(i, k)`` for every sample i, with all N·n points
    stacked and run ``batch_size`` at a time."""
    pairs = [(i, k) for i in range(len(x)) for k in range(n)]
    total = np.zeros(x.shape, np.float64)
    step = a.chunk(batch_size)
    for start in range(0, len(pairs), step):
        chunk = pairs[start:start + step]
        batch = np.stack([point(i, k) for i, k in chunk]).astype(np.float32)
        rows = np.array([i for i, _ in chunk])
        np.add.at(total, rows, a.gradient(batch, target[rows], step))
    return total / n


def _positive_int(value, name) -> int:
    if int(value) != value or value < 1:
        raise InvalidInput(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _baseline_array(x: np.ndarray, baseline) -> np.ndarray:
    try:
        return np.broadcast_to(np.asarray(baseline, np.float32), x.shape)
    except ValueError as exc:
        raise InvalidInput(f"baseline of shape {np.shape(baseline)} does not broadcast to the input shape "
                           f"{x.shape}; give a number, one sample {x.shape[1:]} or a batch {x.shape}") from exc


def _fill_values(x: np.ndarray, baseline) -> np.ndarray:
    """What occluded / removed features are replaced by, shaped like ``x``."""
    if isinstance(baseline, str):
        if baseline != "mean":
            raise InvalidInput(f"baseline {baseline!r} is not known; give a number, an array or 'mean'")
        if x.ndim < 3:
            return np.broadcast_to(x.mean(axis=tuple(range(1, x.ndim)), keepdims=True), x.shape)
        axes = tuple(range(2, x.ndim))
        return np.broadcast_to(x.mean(axis=axes, keepdims=True), x.shape)
    return _baseline_array(x, baseline)


def _spatial_axes(sample: tuple, axes) -> tuple:
    """Axes of one sample that windows/patches slide over: all but the first (channels) when a
    sample has rank ≥ 2, else its only axis."""
    if axes is None:
        return tuple(range(1, len(sample))) if len(sample) >= 2 else (0,)
    axes = tuple(int(ax) for ax in np.atleast_1d(axes))
    if any(ax < 0 or ax >= len(sample) for ax in axes):
        raise InvalidInput(f"axes {axes!r} are out of range for one sample of shape {sample} (axes count from 0 "
                           "without the batch axis)")
    return axes


def _per_axis(value, axes, sample, name) -> tuple:
    vals = tuple(int(v) for v in np.atleast_1d(value))
    if len(vals) == 1:
        vals = vals * len(axes)
    if len(vals) != len(axes) or any(v < 1 for v in vals):
        raise InvalidInput(f"{name} {value!r} must be a positive int or one per axis {axes!r}")
    return tuple(min(v, sample[ax]) for v, ax in zip(vals, axes))


def _window_slices(sample, axes, window, stride) -> list[tuple]:
    """Index tuples (one sample) of every window position; the last start is size − window."""
    starts = []
    for ax, w, s in zip(axes, window, stride):
        pos = list(range(0, sample[ax] - w + 1, s))
        if pos[-1] != sample[ax] - w:
            pos.append(sample[ax] - w)
        starts.append(pos)
    slices = []
    for combo in np.ndindex(*[len(p) for p in starts]):
        sl = [slice(None)] * len(sample)
        for ax, w, pos, j in zip(axes, window, starts, combo):
            sl[ax] = slice(pos[j], pos[j] + w)
        slices.append(tuple(sl))
    return slices
