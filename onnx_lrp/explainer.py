"""The public API: :class:`Explainer` compiles a model once per input shape and explains batches."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from . import composites
from .canonize import canonize
from .canonize.unroll_rnn import has_recurrent, unroll_recurrent
from .compile import RELEVANCE, TARGET, Compiled, compile_explainer
from .errors import InvalidInput, InvalidTarget, OnnxLrpError
from .executor import CUDA, make_session, resolve_providers
from .files import write_atomic
from .graph import FLOAT_TYPES, ModelGraph, data_input, declared_shape, load_detached
from .weights import materialize
from .ops.registry import supported_op_types
from .probe import probe
from .specialize import specialize


@dataclass
class Explanation:
    """Result of :meth:`Explainer.explain`.

    Attributes
    ----------
    relevance : ndarray, same shape as the input
    output : ndarray, the model output (logits when a trailing softmax was stripped)
    target : ndarray (N,) int64, the explained class per sample
    layers : dict, tensor name -> relevance at that tensor (with ``keep_layers=True``)
    notes : list of str, what onnx-lrp changed to explain the model (e.g. softmax stripped)
    input : ndarray or None, the explained input (for showing it as a picture)
    preprocess : :class:`onnx_lrp.metadata.Preprocess` or None, how a picture became the input
        (from the model's metadata), so that the input can be shown as that picture again
    labels : list of str or None, the class names (the model's ``onnx_lrp.labels``)

    In a notebook an Explanation shows itself (:meth:`_repr_html_`): per sample the heatmap, the
    picture and overlay when the input is an image, the prediction and the conservation.
    """

    relevance: np.ndarray
    output: np.ndarray
    target: np.ndarray
    layers: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    input: np.ndarray | None = field(default=None, repr=False)
    preprocess: object = field(default=None, repr=False)
    labels: list[str] | None = field(default=None, repr=False)

    @property
    def prediction(self) -> np.ndarray:
        return self.output.reshape(len(self.output), -1).argmax(axis=1)

    @property
    def target_output(self) -> np.ndarray:
        """The explained output value per sample (what a conserving explanation sums to)."""
        flat = self.output.reshape(len(self.output), -1)
        return flat[np.arange(len(flat)), self.target]

    def conservation(self) -> np.ndarray:
        """Sum of input relevance divided by the explained output, per sample."""
        total = self.relevance.reshape(len(self.relevance), -1).sum(axis=1, dtype=np.float64)
        return total / self.target_output

    def _repr_html_(self) -> str:
        from .html import explanation_html

        return explanation_html(self)


class Explainer:
    """Explain an ONNX model with LRP.

    Parameters
    ----------
    model : str, path, onnx.ModelProto, bytes, or a graph.ReadModel (a file read once, handed over)
    composite : str or Composite
        A preset name (see :func:`onnx_lrp.composites.names`) or a composite object.
    providers : list of str, optional
        onnxruntime execution providers; default CUDA when available, then CPU.
    output : str, optional
        The graph output to explain; default the first floating-point output.
    input_name : str, optional
        The graph input to explain, when the model has several.
    **composite_kwargs
        Passed to the preset, e.g. ``low=``, ``high=`` for ``epsilon_gamma_box``.
    """

    def __init__(self, model, composite="epsilon_plus_flat", providers=None, output=None, input_name=None,
                 **composite_kwargs):
        proto, self.label, self._weights = load_detached(model)
        self.source_model = proto
        vi = data_input(proto, self.label, input_name)
        self.input_name, self.input_shape = vi.name, declared_shape(vi)
        canon = canonize(proto, _pick_output(proto, self.label, output))
        self.model, self.output_name, self.notes = canon.model, canon.output, canon.notes
        self.composite = composites.get(composite, **composite_kwargs)
        self.composite.check_model(self.model, self.label, supported_op_types())
        self.providers = resolve_providers(providers)
        self._graphs: dict[tuple, ModelGraph] = {}
        self._sessions: dict[tuple, tuple] = {}

    @property
    def device(self) -> str:
        """Where the compiled graph runs: ``"cuda"`` when onnxruntime's CUDA provider is used."""
        return "cuda" if CUDA in self.providers else "cpu"

    # --- compile -----------------------------------------------------------------------
    def graph(self, sample_shape) -> ModelGraph:
        """The canonized model as a DAG with shapes probed at ``sample_shape`` (one sample's dims)."""
        key = tuple(int(d) for d in sample_shape)
        if key not in self._graphs:
            fixed = self._fixed_batch()
            batches = [fixed] if fixed else [1, 2]
            samples = [{self.input_name: _sample((n,) + key)} for n in batches]
            model = specialize(self.model, samples, self.label)
            shapes, dtypes = probe(model, self.input_name, (batches[0],) + key, self.label)
            if has_recurrent(model):  # unrolled at this input's sequence length
                model = unroll_recurrent(model, shapes)
                shapes, dtypes = probe(model, self.input_name, (batches[0],) + key, self.label)
            self._graphs[key] = ModelGraph.build(model, self.label, self.input_name, self.output_name,
                                                 shapes, dtypes)
        return self._graphs[key]

    def compile(self, sample_shape, keep_layers: bool = False) -> Compiled:
        return self._session(tuple(sample_shape), keep_layers)[0]

    def _session(self, sample_shape: tuple, keep_layers: bool):
        key = (tuple(int(d) for d in sample_shape), keep_layers)
        if key not in self._sessions:
            compiled = compile_explainer(self.graph(key[0]), self.composite, keep_layers, device=self.device)
            compiled.model.metadata_props.extend(self.source_model.metadata_props)
            self._sessions[key] = (compiled, make_session(compiled.model, self.providers))
        return self._sessions[key]

    # --- explain -----------------------------------------------------------------------
    def explain(self, x, target=None, keep_layers: bool = False, batch_size: int | None = None) -> Explanation:
        """Relevance of every input feature for ``target`` (None: the predicted class)."""
        x = self._check_input(x)
        compiled, session = self._session(x.shape[1:], keep_layers)
        targets = _targets(target, len(x), compiled.num_classes)
        fixed = self._fixed_batch()
        step = fixed or batch_size or len(x)
        parts = [self._run(session, compiled, x[i:i + step], targets[i:i + step], fixed)
                 for i in range(0, len(x), step)]
        relevance = np.concatenate([p[0] for p in parts])
        output = np.concatenate([p[1] for p in parts])
        layers = {t: np.concatenate([p[2][t] for p in parts]) for t in compiled.layers}
        flat = output.reshape(len(output), -1)
        chosen = np.where(targets < 0, flat.argmax(axis=1), targets).astype(np.int64)
        return Explanation(relevance, output, chosen, layers, list(self.notes), x, self.preprocess, self.labels)

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

    def _run(self, session, compiled: Compiled, x, targets, fixed_batch: int | None = None):
        names = [RELEVANCE, compiled.output_name] + list(compiled.layers.values())
        n = len(x)
        if fixed_batch and n < fixed_batch:  # a model with a baked-in batch size: pad, then trim
            x = np.concatenate([x, np.repeat(x[-1:], fixed_batch - n, axis=0)])
            targets = np.concatenate([targets, np.full(fixed_batch - n, -1, np.int64)])
        try:
            values = session.run(names, {compiled.input_name: x, TARGET: targets})
            if len(x) > n:  # drop the padding samples (layer tensors are batch-first here too)
                values = [v[:n] for v in values]
        except Exception as exc:
            raise OnnxLrpError(f"onnxruntime failed running the explainer of {self.label!r} on input shape "
                               f"{x.shape} ({type(exc).__name__}: {exc})") from exc
        layers = dict(zip(compiled.layers, values[2:]))
        return values[0], values[1], layers

    def _fixed_batch(self) -> int | None:
        batch = self.input_shape[0] if self.input_shape else None
        return batch if isinstance(batch, int) and batch > 0 else None

    def _check_input(self, x) -> np.ndarray:
        x = np.asarray(x)
        where = f"input {self.input_name!r} of {self.label!r}"
        if not np.issubdtype(x.dtype, np.floating):
            raise InvalidInput(f"{where} must be floating point, got dtype {x.dtype}; preprocess the data and "
                               "cast it, e.g. x.astype(np.float32)")
        x = np.ascontiguousarray(x, dtype=np.float32)
        expected = self.input_shape
        if x.ndim != len(expected):
            hint = "; add a batch axis with x[None]" if x.ndim == len(expected) - 1 else ""
            raise InvalidInput(f"{where} expects rank {len(expected)} {_fmt(expected)}, got shape {x.shape}{hint}")
        bad = [i for i, d in enumerate(expected) if isinstance(d, int) and d > 0 and i > 0 and x.shape[i] != d]
        if bad:
            raise InvalidInput(f"{where} expects shape {_fmt(expected)}, got {x.shape} (axis {bad[0]} differs)")
        if x.shape[0] == 0:
            raise InvalidInput(f"{where} got an empty batch (shape {x.shape})")
        if not np.isfinite(x).all():
            bad_count = int((~np.isfinite(x)).sum())
            raise InvalidInput(f"{where} holds {bad_count} NaN/Inf values; clean or impute them first")
        return x

    # --- export ------------------------------------------------------------------------
    def save(self, path, input_shape=None) -> Path:
        """Write the standalone explainer (inputs: data and int64 ``target`` (N,), -1 = predicted;
        outputs: ``relevance`` and the model output) for one sample shape; any batch size."""
        sample = self._save_shape(input_shape)
        compiled = self.compile(sample)
        return write_model(materialize(compiled.model), path)

    def _save_shape(self, input_shape) -> tuple:
        shape = list(input_shape) if input_shape is not None else list(self.input_shape)
        sample = shape[1:] if len(shape) == len(self.input_shape) else shape
        if not all(isinstance(d, int) and d > 0 for d in sample):
            raise InvalidInput(f"input {self.input_name!r} of {self.label!r} has dynamic dims {_fmt(self.input_shape)}; "
                               "pass input_shape=(N, ...) to save an explainer for one shape")
        return tuple(sample)


def write_model(model: onnx.ModelProto, path) -> Path:
    """Write ``model`` to ``path`` atomically (:func:`onnx_lrp.files.write_atomic`)."""
    return write_atomic(path, lambda handle: handle.write(model.SerializeToString()), "model ")


def _pick_output(proto: onnx.ModelProto, label: str, name: str | None) -> str:
    outputs = list(proto.graph.output)
    if name is not None:
        if name not in [o.name for o in outputs]:
            raise InvalidInput(f"{label!r} has no output {name!r}; its outputs are {[o.name for o in outputs]!r}")
        return name
    for o in outputs:
        if o.type.HasField("tensor_type") and o.type.tensor_type.elem_type in FLOAT_TYPES:
            return o.name
    raise InvalidInput(f"{label!r} has no floating-point tensor output to explain; outputs: "
                       f"{[o.name for o in outputs]!r}")


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


def _sample(shape: tuple) -> np.ndarray:
    """Data to evaluate shape arithmetic on: only its shape matters."""
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def _fmt(shape) -> str:
    return "(" + ", ".join(str(d) if isinstance(d, int) and d > 0 else (d or "?") for d in shape) + ")"
