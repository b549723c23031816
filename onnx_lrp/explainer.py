"""The public API: :class:`Explainer` compiles a model once per input shape and explains batches."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from . import composites
from .canonize import canonize
from .canonize.precision import to_float32
from .canonize.unroll_rnn import has_recurrent, unroll_recurrent
from .compile import Compiled, compile_explainer
from .errors import InvalidInput, InvalidTarget, NonFiniteRelevance, OnnxLrpError
from .executor import CUDA, make_session, resolve_providers, run_batched
from .files import write_atomic
from .names import did_you_mean
from .graph import FLOAT_TYPES, ModelGraph, declared_shape, explained_inputs, load_detached
from .weights import materialize
from .ops.registry import supported_op_types
from .ceil_pools import check_agreement, specialize_pools
from .probe import probe, probe_for_rewrite
from .sessions import DEFAULT_CACHE_SIZE, SessionCache
from .specialize import specialize


@dataclass
class Explanation:
    """Result of :meth:`Explainer.explain`.

    Attributes
    ----------
    relevance : ndarray, the first explained input's relevance: shaped like that input, or for
        integer data (token ids, bytes) like the first floating-point tensor computed from it,
        e.g. the embedding output (N, T, H)
    output : ndarray, the model output (logits when a trailing softmax was stripped)
    target : ndarray (N,) int64, the explained class per sample (a flat index into one sample's
        output; -1 where weights were given instead)
    layers : dict, tensor name -> relevance at that tensor (with ``keep_layers=True``; tensors
        whose samples are not along axis 0 alone, e.g. (N·T, C) or (3, N, …), are left out)
    notes : list of str, what onnx-lrp changed to explain the model (e.g. softmax stripped)
    input : ndarray or None, the explained input (for showing it as a picture)
    preprocess : :class:`onnx_lrp.metadata.Preprocess` or None, how a picture became the input
        (from the model's metadata), so that the input can be shown as that picture again
    labels : list of str or None, the class names (the model's ``onnx_lrp.labels``)

    In a notebook an Explanation shows itself (:meth:`_repr_html_`): per sample the heatmap, the
    picture and overlay when the input is an image, the prediction and the conservation.
    relevances : dict, every explained input's name -> its relevance (``relevance`` is the first)
    sources : dict, every explained input's name -> the tensor its relevance is given at (itself,
        or the first floating-point tensor computed from integer data)
    weights : ndarray (N, ...) or None, the weights over the output when the target was given as
        weights (the explained quantity is Σ weights ⊙ output)
    """

    relevance: np.ndarray
    output: np.ndarray
    target: np.ndarray
    layers: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    input: np.ndarray | None = field(default=None, repr=False)
    preprocess: object = field(default=None, repr=False)
    labels: list[str] | None = field(default=None, repr=False)
    relevances: dict[str, np.ndarray] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    weights: np.ndarray | None = None

    @property
    def prediction(self) -> np.ndarray:
        return self.output.reshape(len(self.output), -1).argmax(axis=1)

    @property
    def target_output(self) -> np.ndarray:
        """The explained output value per sample (what a conserving explanation sums to)."""
        flat = self.output.reshape(len(self.output), -1)
        if self.weights is not None:
            return (self.weights.reshape(len(flat), -1).astype(np.float64) * flat).sum(axis=1)
        return flat[np.arange(len(flat)), self.target]

    def conservation(self) -> np.ndarray:
        """Sum of the relevance of every explained input divided by the explained output, per sample."""
        parts = self.relevances.values() if self.relevances else [self.relevance]
        total = sum(r.reshape(len(r), -1).sum(axis=1, dtype=np.float64) for r in parts)
        return total / self.target_output

    def _repr_html_(self) -> str:
        from .html import explanation_html

        return explanation_html(self)

    def per_position(self, name: str | None = None) -> np.ndarray:
        """Relevance summed over the last (feature) axis, e.g. (N, T) per token for an embedding
        output (N, T, H); ``name`` picks an explained input (default the first)."""
        relevance = self.relevance if name is None else self.relevances[name]
        return relevance.sum(axis=-1)


class Explainer:
    """Explain an ONNX model with LRP.

    Parameters
    ----------
    model : str, path, onnx.ModelProto, bytes, or a graph.ReadModel (a file read once, handed over)
    composite : str or Composite
        A preset name (see :func:`onnx_lrp.composites.names`) or a composite object.
    providers : list of str, optional
        onnxruntime execution providers; default CUDA when available, then CPU.
    output_name : str, optional
        The graph output to explain; default the first floating-point output. ``output`` is an
        alias.
    input_name : str or list of str, optional
        The graph input(s) to explain; default the one floating-point input, else the integer
        input ``input_ids``, else the integer inputs that index an embedding table. Every other
        input the explained output reads is fed (``explain(..., feeds=)``) and is a constant to
        the rules. For integer inputs the explanation starts at the first floating-point tensor
        computed from them (see :attr:`sources`).
    strip_squashers : bool
        True (default): a trailing Sigmoid or (Log)Softmax is removed so scores are explained
        (reported in ``notes``); False explains the squashed output itself.
    batch_axis : 0 or None
        None for a model whose inputs have no batch axis (axis 0 is time, a frame sequence): the
        whole input is one sample, targets index the whole output, and the results carry a
        leading batch axis of 1.
    cache_size : int or None
        How many input shapes keep their compiled graphs and onnxruntime sessions (default 8, see
        :mod:`onnx_lrp.sessions`): each new shape (image size, sequence length) is compiled once,
        and beyond ``cache_size`` shapes the least recently used one is forgotten and its memory
        released, so that inputs of ever new shapes do not grow memory without bound. None keeps
        every shape. Batch sizes share one program.
    **composite_kwargs
        Passed to the preset, e.g. ``low=``, ``high=`` for ``epsilon_gamma_box``.
    """

    #: the :class:`onnx_lrp.attribution.Attributor` made for this explainer, once asked for
    _attributor = None

    def __init__(self, model, composite="epsilon_plus_flat", providers=None, output=None, input_name=None,
                 output_name=None, batch_axis=0, strip_squashers=True, cache_size=DEFAULT_CACHE_SIZE,
                 **composite_kwargs):
        proto, self.label, self._weights = load_detached(model)
        proto, precision_note = to_float32(proto)
        self.source_model = proto
        if output is not None and output_name is not None and output != output_name:
            raise InvalidInput(f"output={output!r} and output_name={output_name!r} disagree; give one")
        picked = explained_inputs(proto, self.label, input_name)
        self.input_names = [vi.name for vi in picked]
        self.input_name = self.input_names[0]
        declared = {vi.name: vi for vi in proto.graph.input}
        self.input_shape = declared_shape(declared[self.input_name])
        self.batch_axis = batch_axis
        if batch_axis not in (0, None):
            raise InvalidInput(f"batch_axis={batch_axis!r}: give 0 (the inputs are batches) or None (the whole "
                               "input is one sample)")
        proto = _copy(proto)
        out = _pick_output(proto, self.label, output_name if output_name is not None else output)
        if batch_axis is None:
            out = _add_batch_axis(proto, self.input_names, out)
            declared = {vi.name: vi for vi in proto.graph.input}
            self.input_shape = declared_shape(declared[self.input_name])
        canon = canonize(proto, out, strip_squashers)
        self.model, self.output_name, self.notes = canon.model, canon.output, canon.notes
        # every later compile starts from the canonized model: the weights only the source read (those
        # from before a BatchNorm fold, float16 originals) are dropped before the store spills them
        self._weights.retain([self.model])
        read = [vi.name for vi in self.model.graph.input]
        #: graph inputs the explained output reads but that are not explained: pass them as feeds
        self.feed_names = [name for name in read if name not in self.input_names]
        self._declared = {name: declared_shape(declared[name]) for name in read + self.input_names}
        self._elem = {name: declared[name].type.tensor_type.elem_type for name in read + self.input_names}
        self.notes += [precision_note] if precision_note else []
        self.composite = composites.get(composite, **composite_kwargs)
        self.composite.check_model(self.model, self.label, supported_op_types())
        self.providers = resolve_providers(providers)
        #: the graphs and sessions of the most recently used input shapes (shared with the
        #: :class:`~onnx_lrp.attribution.Attributor`); its lock makes one compile at a time: threads
        #: sharing the explainer would otherwise compile the same shape twice and walk one
        #: ModelGraph's memo together; running a compiled session needs no lock
        self.sessions = SessionCache(cache_size, self._weights)
        self._compiling = self.sessions.lock

    @property
    def device(self) -> str:
        """Where the compiled graph runs: ``"cuda"`` when onnxruntime's CUDA provider is used."""
        return "cuda" if CUDA in self.providers else "cpu"

    @property
    def sources(self) -> dict[str, str]:
        """Explained input -> the tensor its explanation starts at, for the last compiled shape
        (integer inputs start at the first floating-point tensor computed from them)."""
        entry = self.sessions.most_recent()
        if entry is None or entry.graph is None:
            return {name: name for name in self.input_names}
        return dict(entry.graph.sources)

    def close(self) -> None:
        """Release the compiled sessions, the attributor's and the scratch file of the detached
        weights (see :mod:`onnx_lrp.weights`). The explainer stays usable: it compiles again when
        next asked. Call it when no explanation is running; ``with Explainer(...) as e:`` does."""
        with self._compiling:
            self.sessions.clear()
            if self._attributor is not None:
                self._attributor.close()
            self._weights.close()

    def __enter__(self) -> "Explainer":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    # --- compile -----------------------------------------------------------------------
    def graph(self, sample_shape) -> ModelGraph:
        """The canonized model as a DAG with shapes probed at ``sample_shape``: one sample's dims
        of the first explained input, or a dict input name -> one sample's dims (an input without
        a batch axis: its whole shape)."""
        key = self._shape_key(sample_shape)
        return self.sessions.graph(key, lambda: self._build_graph(key))

    def _build_graph(self, key: tuple) -> ModelGraph:
        """Build, probe and index the graph for one shape key (under the cache's lock)."""
        self._check_reads()
        fixed = self._fixed_batch()
        batches = [fixed] if fixed else [1, 2]
        samples = [self._samples(key, n) for n in batches]
        model = specialize(self.model, samples, self.label)
        if has_recurrent(model):  # unrolled at this input's sequence length
            rolled, _ = probe_for_rewrite(model, samples[0], self.label)
            model = unroll_recurrent(model, rolled)
        shapes, dtypes = probe(model, samples[0], self.label)
        model, shapes, dtypes = specialize_pools(model, shapes, dtypes)
        check_agreement(model, samples[0], shapes, self.label)
        axes = {name: axis for name, _, axis in key}
        g = ModelGraph.build(model, self.label, self.input_name, self.output_name, shapes, dtypes,
                             self.input_names, axes)
        g.batched, g.fixed_batch = self.batch_axis is not None, fixed
        if len(samples) > 1:  # where each tensor's batch is, from a second run (only when asked)
            g.shapes_at_other_batch = lambda: probe(model, samples[1], self.label)[0]
        return g

    def compile(self, sample_shape, keep_layers: bool = False, weights: bool = False) -> Compiled:
        """The explainer graph for one sample shape; ``weights=True``: it takes weights over the
        output (input ``target_weights``) instead of a class per sample (``target``)."""
        return self._session(self._shape_key(sample_shape), keep_layers, weights)[0]

    def _session(self, key: tuple, keep_layers: bool, weights: bool = False):
        """(Compiled, session) of the LRP program for shape ``key``, from the cache or compiled."""
        def compile_lrp(g):
            compiled = compile_explainer(g, self.composite, keep_layers, weights=weights, device=self.device)
            compiled.model.metadata_props.extend(self.source_model.metadata_props)
            return compiled, make_session(compiled.model, self.providers)

        return self.sessions.program(key, ("lrp", keep_layers, weights), lambda: self._build_graph(key),
                                     compile_lrp)

    def _shape_key(self, sample_shape) -> tuple:
        """((input name, shape without the batch axis, batch axis or None), ...) over every input
        the model reads."""
        if isinstance(sample_shape, tuple) and sample_shape and isinstance(sample_shape[0], tuple):
            return sample_shape  # already a key
        given = dict(sample_shape) if isinstance(sample_shape, dict) else {self.input_name: tuple(sample_shape)}
        key = []
        for name in self._declared:
            if name not in self.feed_names and name not in self.input_names:
                continue
            declared = self._declared[name]
            axis = self._declared_axis(name)
            if name in given:
                shape = tuple(int(d) for d in given[name])
                if axis == "unknown":
                    axis = 0 if len(shape) == len(declared) - 1 else None
            elif all(isinstance(d, int) and d > 0 for i, d in enumerate(declared) if i != axis) and (
                    axis != "unknown" or (declared and not isinstance(declared[0], int))):
                axis = 0 if axis == "unknown" else axis
                shape = tuple(d for i, d in enumerate(declared) if i != axis)
            elif name in self.feed_names:
                raise self._missing_feeds([name])
            else:
                raise InvalidInput(f"input {name!r} of {self.label!r} has dynamic dims {_fmt(declared)}; give its "
                                   "shape in a dict of sample shapes")
            key.append((name, shape, axis))
        return tuple(key)

    def _declared_axis(self, name: str):
        """An input's batch axis as declared: 0 for explained inputs; for a feed the axis named
        like the explained input's batch (a state (layers, N, H): 1), None when every dim is
        fixed, "unknown" when the declaration cannot tell (decided from the data: axis 0 when it
        has as many rows as the batch)."""
        if name in self.input_names:
            return 0
        declared = self._declared[name]
        symbol = self.input_shape[0] if self.input_shape else None
        if isinstance(symbol, str) and symbol in declared:
            return declared.index(symbol)
        if all(isinstance(d, int) and d > 0 for d in declared):
            return None
        return "unknown"

    def _samples(self, key: tuple, batch: int) -> dict[str, np.ndarray]:
        """Data to evaluate shape arithmetic and probe shapes on: only the shapes matter."""
        rng = np.random.default_rng(0)
        out = {}
        for name, shape, axis in key:
            full = shape if axis is None else shape[:axis] + (batch,) + shape[axis:]
            dtype = onnx.helper.tensor_dtype_to_np_dtype(self._elem[name])
            out[name] = (rng.standard_normal(full).astype(dtype) if np.issubdtype(dtype, np.floating)
                         else np.zeros(full, dtype))
        return out

    def _check_reads(self) -> None:
        read = {vi.name for vi in self.model.graph.input}
        for name in self.input_names:
            if name not in read:
                raise InvalidInput(f"output {self.output_name!r} of {self.label!r} does not depend on input "
                                   f"{name!r}; nothing to explain: choose another output= or input_name=")

    # --- explain -----------------------------------------------------------------------
    def explain(self, x, target=None, keep_layers: bool = False, batch_size: int | None = None,
                feeds: dict | None = None) -> Explanation:
        """Relevance of every input feature for ``target``.

        ``target``: None or -1 (the predicted class, the arg-max over one sample's output), a flat
        index into one sample's output or one per sample, a tuple index such as ``(t, c)`` for a
        sequence output (each entry an int or one per sample), or float weights shaped like one
        sample's output (the same for every sample) or like the whole output (N, ...): the
        explained quantity is then Σ weights ⊙ output (a mask over a segmentation map, one
        detection row, a direction in an embedding space).
        ``x``: the explained input's data, or a dict input name -> data when several are
        explained. ``feeds``: the other inputs the explained output reads (states, masks,
        token-type ids), as the model takes them; with a batch axis they are split into chunks
        along with ``x``, without one they are given whole to every chunk.
        """
        inputs, n = self._check_inputs(x, feeds)
        key = tuple((name, v.shape if axis is None else v.shape[:axis] + v.shape[axis + 1:], axis)
                    for name, (v, axis) in inputs.items())
        g = self.graph(key)
        weights, targets = _resolve_target(target, n, tuple(g.shape(g.output_name)[1:]))
        compiled, session = self._session(key, keep_layers, weights is not None)
        names = list(compiled.relevances.values()) + [compiled.output_name] + list(compiled.layers.values())
        arrays = {name: v for name, (v, _) in inputs.items()}
        axes = {name: axis for name, (_, axis) in inputs.items()}
        seed_input = compiled.target_name
        arrays[seed_input] = weights if weights is not None else targets
        axes[seed_input] = 0
        # a model found not to run at batch 2 has its batch-axis checks off: one sample per run (a
        # model never probed there runs whole, and onnxruntime refuses a batch baked in)
        fixed = self._fixed_batch() or (1 if g.batch_probe_failed() else None)
        values = run_batched(session, names, arrays, axes, n, batch_size, fixed,
                             f"the explainer of {self.label}")
        k = len(compiled.relevances)
        relevances = dict(zip(compiled.relevances, values[:k]))
        output = values[k]
        _check_finite(relevances, output, self.label)
        layers = dict(zip(compiled.layers, values[k + 1:]))
        flat = output.reshape(len(output), -1)
        chosen = np.where(targets < 0, flat.argmax(axis=1), targets).astype(np.int64) if weights is None \
            else targets
        return Explanation(relevances[self.input_name], output, chosen, layers,
                           list(self.notes) + self._notes(g.sources), inputs[self.input_name][0], self.preprocess,
                           self.labels,
                           relevances=relevances, sources=dict(g.sources), weights=weights)

    @property
    def preprocess(self):
        """How a picture becomes the model's input (:class:`onnx_lrp.metadata.Preprocess`, from the
        model's ``onnx_lrp.preprocess`` metadata and its input shape), for showing inputs as pictures;
        None when the metadata cannot be read (explaining does not need it)."""
        return self._metadata()[0]

    @property
    def labels(self) -> list[str] | None:
        """The class names of the model's ``onnx_lrp.labels`` metadata, or None."""
        return self._metadata()[1]

    def _metadata(self) -> tuple:
        if not hasattr(self, "_meta"):
            from . import inputs, metadata

            try:
                meta = metadata.from_proto(self.source_model, self.label)
                model_input = inputs.ModelInput.from_dims(self.input_name, self.input_shape)
                self._meta = (inputs.resolve(meta.preprocess, model_input), meta.labels)
            except OnnxLrpError:
                self._meta = (None, None)
        return self._meta

    def _notes(self, sources: dict) -> list[str]:
        return [f"input {name!r} holds integers, which carry no relevance: its explanation starts at {source!r}, "
                "the first floating-point tensor computed from it" for name, source in sources.items()
                if source != name]

    def _fixed_batch(self) -> int | None:
        batch = self.input_shape[0] if self.input_shape else None
        return batch if isinstance(batch, int) and batch > 0 else None

    def _check_inputs(self, x, feeds) -> tuple[dict, int]:
        """{input name: (array as the model takes it, its batch axis or None)} and the batch size."""
        given = dict(x) if isinstance(x, dict) else {self.input_name: x}
        if self.batch_axis is None:  # the whole input is one sample
            given = {name: np.asarray(value)[None] for name, value in given.items()}
        unknown = [k for k in given if k not in self.input_names]
        if unknown:
            raise InvalidInput(f"{unknown[0]!r}{did_you_mean(unknown[0], self.input_names)} is not an explained input "
                               f"of {self.label!r}; explained: "
                               f"{self.input_names!r} (other inputs go in feeds=)")
        missing = [k for k in self.input_names if k not in given]
        if missing:
            raise InvalidInput(f"no data for the explained input(s) {missing!r} of {self.label!r}; pass x as a "
                               "dict input name -> array")
        self._check_reads()
        arrays = {name: self._check_input(given[name], name) for name in self.input_names}
        n = len(arrays[self.input_name])
        for name, arr in arrays.items():
            if len(arr) != n:
                raise InvalidInput(f"explained inputs hold different batch sizes: {self.input_name!r} {n}, "
                                   f"{name!r} {len(arr)}")
        out = {name: (arr, 0) for name, arr in arrays.items()}
        out.update(self._check_feeds(feeds or {}, n))
        return out, n

    def _missing_feeds(self, missing: list[str]) -> InvalidInput:
        return InvalidInput(f"output {self.output_name!r} of {self.label!r} also reads the graph input(s) "
                            f"{missing!r} besides {self.input_names!r}; pass their values with feeds="
                            "{name: array} (command line: --feed NAME=FILE.npy), or explain them too with "
                            "input_name=[...]")

    def _check_feeds(self, feeds: dict, n: int) -> dict:
        # inputs of the model that the explained output does not read are accepted and unused
        model_inputs = {vi.name for vi in self.source_model.graph.input}
        unknown = [k for k in feeds if k not in self.feed_names and (k not in model_inputs or k in self.input_names)]
        if unknown:
            raise InvalidInput(f"feeds name {unknown[0]!r}{did_you_mean(unknown[0], self.feed_names or model_inputs)}, "
                               f"which is not an unexplained input of {self.label!r}; "
                               f"explained output {self.output_name!r} reads: {self.feed_names!r}")
        feeds = {k: v for k, v in feeds.items() if k in self.feed_names}
        missing = [k for k in self.feed_names if k not in feeds]
        if missing:
            raise self._missing_feeds(missing)
        out = {}
        for name in self.feed_names:
            arr = _as_model_dtype(np.asarray(feeds[name]), self._elem[name], f"feed {name!r} of {self.label!r}")
            declared = self._declared[name]
            if arr.ndim != len(declared):
                raise InvalidInput(f"feed {name!r} of {self.label!r} expects rank {len(declared)} "
                                   f"{_fmt(declared)}, got shape {arr.shape}")
            axis = self._declared_axis(name)
            if axis == "unknown":
                axis = 0 if arr.ndim > 0 and arr.shape[0] == n and not isinstance(declared[0], int) else None
            if axis is not None and arr.shape[axis] != n:
                raise InvalidInput(f"feed {name!r} of {self.label!r} has its batch on axis {axis} (declared "
                                   f"{_fmt(declared)}); it holds {arr.shape[axis]} samples there, the explained "
                                   f"input {n}")
            bad = [i for i, d in enumerate(declared) if isinstance(d, int) and d > 0 and i != axis
                   and arr.shape[i] != d]
            if bad:
                raise InvalidInput(f"feed {name!r} of {self.label!r} expects shape {_fmt(declared)}, got {arr.shape} "
                                   f"(axis {bad[0]} differs)")
            out[name] = (arr, axis)
        return out

    def _check_input(self, x, name: str | None = None) -> np.ndarray:
        name = name or self.input_name
        x = np.asarray(x)
        where = f"input {name!r} of {self.label!r}"
        elem = self._elem.get(name, onnx.TensorProto.FLOAT)
        if elem in FLOAT_TYPES:
            if not np.issubdtype(x.dtype, np.floating):
                raise InvalidInput(f"{where} must be floating point, got dtype {x.dtype}; preprocess the data and "
                                   "cast it, e.g. x.astype(np.float32)")
            x = np.ascontiguousarray(x, dtype=np.float32)
        else:
            x = _as_model_dtype(x, elem, where)
        expected = self._declared.get(name, self.input_shape)
        if x.ndim != len(expected):
            hint = "; add a batch axis with x[None]" if x.ndim == len(expected) - 1 else ""
            raise InvalidInput(f"{where} expects rank {len(expected)} {_fmt(expected)}, got shape {x.shape}{hint}")
        bad = [i for i, d in enumerate(expected) if isinstance(d, int) and d > 0 and i > 0 and x.shape[i] != d]
        if bad:
            raise InvalidInput(f"{where} expects shape {_fmt(expected)}, got {x.shape} (axis {bad[0]} differs)")
        if x.shape[0] == 0:
            raise InvalidInput(f"{where} got an empty batch (shape {x.shape})")
        if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
            bad_count = int((~np.isfinite(x)).sum())
            raise InvalidInput(f"{where} holds {bad_count} NaN/Inf values; clean or impute them first")
        return x

    # --- export ------------------------------------------------------------------------
    def save(self, path, input_shape=None) -> Path:
        """Write the standalone explainer for one sample shape; any batch size. Inputs: the
        explained input(s), the feeds, and int64 ``target`` (N,), -1 = predicted; outputs:
        ``relevance`` (``relevance/NAME`` for further explained inputs) and the model output.
        ``input_shape``: the first input's shape, or a dict input name -> shape."""
        compiled = self.compile(self._save_shape(input_shape))
        return write_model(materialize(compiled.model), path)

    def _save_shape(self, input_shape):
        if isinstance(input_shape, dict):  # full shapes, with the batch where each input declares it
            unknown = [name for name in input_shape if name not in self._declared]
            if unknown:
                raise InvalidInput(f"{self.label!r} reads no input {unknown[0]!r}"
                                   f"{did_you_mean(unknown[0], self._declared)}; it reads {list(self._declared)!r}")
            out = {}
            for name, shape in input_shape.items():
                axis = self._declared_axis(name)
                if axis == "unknown":
                    declared = self._declared[name]
                    axis = 0 if len(shape) == len(declared) and not isinstance(declared[0], int) else None
                out[name] = tuple(shape) if axis is None else tuple(shape)[:axis] + tuple(shape)[axis + 1:]
            return out
        shape = list(input_shape) if input_shape is not None else list(self.input_shape)
        sample = shape[1:] if len(shape) == len(self.input_shape) else shape
        if not all(isinstance(d, int) and d > 0 for d in sample):
            raise InvalidInput(f"input {self.input_name!r} of {self.label!r} has dynamic dims {_fmt(self.input_shape)}; "
                               "pass input_shape=(N, ...) to save an explainer for one shape")
        return tuple(sample)


def _as_model_dtype(arr: np.ndarray, elem: int, where: str) -> np.ndarray:
    """``arr`` cast to the element type the model declares, refusing casts between kinds."""
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem))
    same_kind = (np.issubdtype(arr.dtype, np.floating) == np.issubdtype(dtype, np.floating)
                 and (arr.dtype == np.bool_) == (dtype == np.bool_))
    if not same_kind:
        raise InvalidInput(f"{where} must have dtype {dtype} (as the model declares), got {arr.dtype}")
    if np.issubdtype(dtype, np.integer) and arr.size and (arr.min() < np.iinfo(dtype).min or arr.max() > np.iinfo(dtype).max):
        raise InvalidInput(f"{where} holds values outside the range of {dtype}")
    out = np.asarray(arr, dtype=dtype)  # not ascontiguousarray: it makes a scalar 1-d
    return out if out.flags.c_contiguous else out.copy()


def _copy(proto: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    return out


def write_model(model: onnx.ModelProto, path) -> Path:
    """Write ``model`` to ``path`` atomically (:func:`onnx_lrp.files.write_atomic`)."""
    return write_atomic(path, lambda handle: handle.write(model.SerializeToString()), "model ")


def _pick_output(proto: onnx.ModelProto, label: str, name: str | None) -> str:
    """The explained output: a graph output, or any tensor a node computes (e.g. the logits
    before a written-out softmax), which then becomes the graph output."""
    outputs = list(proto.graph.output)
    if name is not None:
        if name in [o.name for o in outputs]:
            return name
        if any(name in node.output for node in proto.graph.node):
            proto.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
            return name
        tensors = [o.name for o in outputs] + [t for node in proto.graph.node for t in node.output if t]
        raise InvalidInput(f"{label!r} has no output or tensor {name!r}{did_you_mean(name, tensors)}; its outputs "
                           f"are {[o.name for o in outputs]!r}")
    for o in outputs:
        if o.type.HasField("tensor_type") and o.type.tensor_type.elem_type in FLOAT_TYPES:
            return o.name
    raise InvalidInput(f"{label!r} has no floating-point tensor output to explain; outputs: "
                       f"{[o.name for o in outputs]!r}")


def _add_batch_axis(proto: onnx.ModelProto, inputs: list[str], output: str) -> str:
    """For a model without a batch axis: each explained input and the output get a leading axis
    of 1 (Squeeze after the input, Unsqueeze before the output), so the whole input is one sample."""
    axis0 = onnx.helper.make_tensor("lrp_batch_axis", onnx.TensorProto.INT64, [1], [0])
    proto.graph.initializer.append(axis0)
    renamed = {}
    for vi in proto.graph.input:
        if vi.name in inputs:
            inner = f"{vi.name}/unbatched"
            renamed[vi.name] = inner
            dims = vi.type.tensor_type.shape.dim
            first = onnx.TensorShapeProto.Dimension(dim_value=1)
            kept = [onnx.TensorShapeProto.Dimension() for _ in dims]
            for new, old in zip(kept, dims):
                new.CopyFrom(old)
            del dims[:]
            dims.extend([first] + kept)
    for node in proto.graph.node:
        for i, t in enumerate(node.input):
            if t in renamed:
                node.input[i] = renamed[t]
    squeezes = [onnx.helper.make_node("Squeeze", [name, "lrp_batch_axis"], [inner], name=f"{inner}/squeeze")
                for name, inner in renamed.items()]
    batched = f"{output}/batched"
    unsqueeze = onnx.helper.make_node("Unsqueeze", [output, "lrp_batch_axis"], [batched], name=f"{batched}/unsqueeze")
    nodes = squeezes + list(proto.graph.node) + [unsqueeze]
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    proto.graph.output.append(onnx.helper.make_tensor_value_info(batched, onnx.TensorProto.FLOAT, None))
    return batched


def _targets(target, n: int, num_classes: int) -> np.ndarray:
    if target is None:
        return np.full(n, -1, np.int64)
    arr = np.asarray(target)
    if not np.issubdtype(arr.dtype, np.integer):
        raise InvalidTarget(f"target must be None, an int or {n} ints, got {target!r}")
    arr = np.broadcast_to(arr, (n,)) if arr.ndim == 0 else arr
    if arr.shape != (n,):
        raise InvalidTarget(f"target has shape {arr.shape}; give one class per sample ({n},) or a single int")
    bad = arr[(arr < -1) | (arr >= num_classes)]
    if bad.size:
        raise InvalidTarget(f"target {int(bad[0])} is out of range: the model has {num_classes} outputs "
                            f"(valid 0..{num_classes - 1}, or -1 / None for the predicted class)")
    return arr.astype(np.int64)


def _check_finite(relevances: dict, output: np.ndarray, label: str) -> None:
    """Relevance that is inf or NaN is never returned: say which samples and why (rules map a zero
    denominator to 0, so only float32 overflow, in the model or in the relevance pass, gets here)."""
    out = output.reshape(len(output), -1)
    for name, r in relevances.items():
        bad = ~np.isfinite(r.reshape(len(r), -1)).all(axis=1)
        if not bad.any():
            continue
        samples = np.flatnonzero(bad).tolist()
        if not np.isfinite(out[bad]).all():
            why = "the model's own output is not finite there"
        else:
            why = (f"float32 overflowed in the relevance pass (the output reaches {np.abs(out[bad]).max():.3g}; "
                   "float32 ends at 3.4e38): look for huge weights or activations in the model")
        raise NonFiniteRelevance(f"the relevance of {name!r} is not finite for sample(s) {samples[:10]} of "
                                 f"{label!r}: {why}")


def _resolve_target(target, n: int, out_shape: tuple) -> tuple[np.ndarray | None, np.ndarray]:
    """(weights (N, *out_shape) float32 or None, flat index per sample (N,) int64; -1 = predicted,
    all -1 when weights are given)."""
    num = int(np.prod(out_shape, dtype=np.int64))
    if isinstance(target, tuple):
        return None, _multi_index(target, n, out_shape)
    arr = np.asarray(target) if target is not None else None
    if arr is None or not np.issubdtype(arr.dtype, np.floating):
        return None, _targets(target, n, num)
    if arr.shape == out_shape:
        arr = np.broadcast_to(arr, (n,) + out_shape)
    if arr.shape != (n,) + out_shape:
        raise InvalidTarget(f"target must be None, an int, {n} ints, a tuple index or float weights shaped like "
                            f"one sample's output {out_shape} or like the whole output {(n,) + out_shape}; got "
                            f"float values of shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InvalidTarget("target weights hold NaN/Inf values")
    return np.ascontiguousarray(arr, dtype=np.float32), np.full(n, -1, np.int64)


def _multi_index(target: tuple, n: int, out_shape: tuple) -> np.ndarray:
    """A tuple index into one sample's output, e.g. (time step, class), as flat indices."""
    if len(target) != len(out_shape):
        raise InvalidTarget(f"target {target!r} has {len(target)} entries; one sample's output has shape "
                            f"{out_shape}: give one index per axis")
    parts = [np.asarray(t) for t in target]
    if not all(np.issubdtype(p.dtype, np.integer) for p in parts):
        raise InvalidTarget(f"target {target!r}: a tuple index takes ints (or one int per sample)")
    try:
        parts = np.broadcast_arrays(*[np.broadcast_to(p, (n,)) if p.ndim == 0 else p for p in parts])
        wrapped = [np.where(p < 0, p + d, p) for p, d in zip(parts, out_shape)]
        flat = np.ravel_multi_index(tuple(wrapped), out_shape)
    except ValueError as exc:
        raise InvalidTarget(f"target {target!r} is out of range for one sample's output of shape {out_shape}, or "
                            f"not one index per sample ({n}): {exc}") from exc
    if flat.shape != (n,):
        raise InvalidTarget(f"target {target!r}: give ints or {n} ints per axis")
    return flat.astype(np.int64)


def _fmt(shape) -> str:
    return "(" + ", ".join(str(d) if isinstance(d, int) and d > 0 else (d or "?") for d in shape) + ")"
