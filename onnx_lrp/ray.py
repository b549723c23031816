"""Explain a Ray Dataset on a cluster: ``map_batches`` over a pool of actors, each holding one
compiled explainer (a GPU actor per GPU when the cluster has GPUs), relevance written to Parquet
or NumPy files. Needs the ``ray`` extra: ``pip install 'onnx-lrp[ray]'``.

Every actor compiles the model once (per input shape) and then explains the batches Ray hands it,
so the cost of canonizing and compiling is paid once per actor, not per batch. The result for a
row is the same as :meth:`onnx_lrp.Explainer.explain` (or :func:`onnx_lrp.attribution.attribute`
for the baseline methods) on that row alone.

Example, on a cluster (``ray start --head`` on one machine, ``ray start --address=HEAD:6379`` on
the others, then on any of them)::

    import ray, ray.data
    from onnx_lrp.ray import explain_dataset, write_relevance

    ray.init(address="auto")
    ds = ray.data.read_numpy("s3://bucket/images-preprocessed/")      # column "data": (3, 224, 224)
    out = explain_dataset(ds, "efficientnet_lite0.onnx", column="data", batch_size=32)
    write_relevance(out, "s3://bucket/relevance/", format="parquet")  # or format="numpy"

The model file is read on the driver and shipped to the actors through Ray's object store, so
the workers need onnx-lrp and onnxruntime (``onnxruntime-gpu`` on GPU nodes) but not the file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

try:
    import ray
    import ray.data
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("onnx_lrp.ray needs Ray Data: pip install 'onnx-lrp[ray]' (ray[data], pyarrow)") from exc

from .errors import InvalidInput

RELEVANCE, TARGET, OUTPUT = "relevance", "target", "output"


class ExplainActor:
    """A ``map_batches`` callable class: one explainer per actor, built on first use.

    Parameters
    ----------
    model : bytes, ``ray.ObjectRef`` of bytes, or a path readable on the worker
    column : the input column; its values are one sample each, (B, ...) per batch
    target_column : optional column of class indices (else each row's predicted class)
    method, options : as :func:`onnx_lrp.attribution.attribute` (``"lrp"`` uses ``composite``)
    keep : columns copied to the output (ids, labels); the input column is dropped unless listed
    """

    def __init__(self, model, column: str, composite="epsilon_plus_flat", method: str = "lrp",
                 target_column: str | None = None, keep=(), providers=None, batch_size: int | None = None,
                 options: dict | None = None, composite_kwargs: dict | None = None):
        from . import Explainer
        from .attribution import attributor

        if isinstance(model, ray.ObjectRef):
            model = ray.get(model)
        if isinstance(model, bytes):
            import onnx

            model = onnx.load_from_string(model)
        self.explainer = Explainer(model, composite=composite, providers=providers, **(composite_kwargs or {}))
        self.attributor = attributor(self.explainer)
        self.column, self.target_column, self.keep = column, target_column, tuple(keep)
        self.method, self.options, self.batch_size = method, dict(options or {}), batch_size

    def __call__(self, batch: dict) -> dict:
        from .attribution import attribute

        x = _stack(batch[self.column], self.column)
        target = None if self.target_column is None else np.asarray(batch[self.target_column], np.int64)
        out = {k: batch[k] for k in self.keep}
        if self.method == "lrp" and not self.options:
            res = self.explainer.explain(x, target, batch_size=self.batch_size)
            relevance, output, chosen = res.relevance, res.output, res.target
        else:
            chosen = self.attributor.targets(self.attributor.check(x), target, self.batch_size)
            relevance = attribute(self.attributor, x, chosen, self.method, self.batch_size, **self.options)
            output = self.attributor.forward(x, self.batch_size)
        out[RELEVANCE] = np.asarray(relevance, np.float32)
        out[TARGET] = np.asarray(chosen, np.int64)
        out[OUTPUT] = np.asarray(output, np.float32).reshape(len(x), -1)
        return out


def explain_dataset(ds: "ray.data.Dataset", model, *, column: str = "data", composite="epsilon_plus_flat",
                    method: str = "lrp", target_column: str | None = None, keep=None, batch_size: int = 16,
                    concurrency: int | None = None, num_gpus: float | None = None, num_cpus: float | None = None,
                    providers=None, options: dict | None = None, **composite_kwargs) -> "ray.data.Dataset":
    """Explain every row of ``ds`` (lazily: the returned Dataset runs when consumed or written).

    Parameters
    ----------
    ds : Ray Dataset with a tensor column ``column`` holding one model input sample per row
    model : path of an ONNX model (read here, shipped through the object store), ModelProto or bytes
    composite, method, options : what to compute; see :func:`onnx_lrp.attribution.attribute`
    target_column : column of int class indices; default: each row's predicted class
    keep : columns passed through (default: every column except ``column``)
    batch_size : rows per ``map_batches`` call (and per onnxruntime call)
    concurrency : actors in the pool; default one per GPU when GPUs are used, else 2
    num_gpus : GPUs per actor; default 1 when the cluster has GPUs, else 0
    num_cpus : CPUs per actor (Ray's default when None)

    Returns
    -------
    Dataset with the kept columns plus ``relevance`` (like the input), ``target`` (int64) and
    ``output`` (the explained model output, flattened)
    """
    if column not in ds.schema().names:
        raise InvalidInput(f"the dataset has no column {column!r}; its columns are {ds.schema().names!r}")
    keep = [c for c in ds.schema().names if c != column] if keep is None else list(keep)
    gpus = _gpus_per_actor(num_gpus)
    if concurrency is None:
        concurrency = max(1, int(ray.cluster_resources().get("GPU", 0) // gpus)) if gpus else 2
    remote = {"num_gpus": gpus} if gpus else {}
    if num_cpus is not None:
        remote["num_cpus"] = num_cpus
    kwargs = dict(model=_ship(model), column=column, composite=composite, method=method,
                  target_column=target_column, keep=keep, providers=providers, batch_size=batch_size,
                  options=options, composite_kwargs=composite_kwargs)
    return ds.map_batches(ExplainActor, fn_constructor_kwargs=kwargs, batch_size=batch_size,
                          batch_format="numpy", concurrency=concurrency, **remote)


def write_relevance(ds: "ray.data.Dataset", path, format: str = "parquet", column: str = RELEVANCE) -> str:
    """Write an explained dataset: ``parquet`` (every column; relevance as a tensor column) or
    ``numpy`` (``.npy`` files of the ``column`` only). Returns ``path``."""
    path = str(path)
    if format == "parquet":
        ds.write_parquet(path)
    elif format == "numpy":
        ds.write_numpy(path, column=column)
    else:
        raise InvalidInput(f"format {format!r} is not known; choose 'parquet' or 'numpy'")
    return path


def _ship(model):
    """The model as an object-store reference to its bytes (workers need not see the file)."""
    import onnx

    from .weights import materialize

    if isinstance(model, (str, Path)):
        if not Path(model).is_file():
            raise InvalidInput(f"model {str(model)!r} does not exist")
        data = Path(model).read_bytes()
        proto = onnx.load_from_string(data)
        if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
            proto = onnx.load(str(model))  # external data files next to the model: inline them
            data = proto.SerializeToString()
    elif isinstance(model, onnx.ModelProto):
        data = materialize(model).SerializeToString()
    elif isinstance(model, bytes):
        data = model
    else:
        raise InvalidInput(f"model must be a path, an onnx.ModelProto or bytes, got {type(model).__name__}")
    return ray.put(data)


def _gpus_per_actor(num_gpus) -> float:
    if num_gpus is not None:
        return float(num_gpus)
    return 1.0 if ray.is_initialized() and ray.cluster_resources().get("GPU", 0) >= 1 else 0.0


def _stack(values, column: str) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype != object:
        return np.ascontiguousarray(values, dtype=np.float32)
    try:
        return np.stack([np.asarray(v, np.float32) for v in values])
    except ValueError as exc:
        raise InvalidInput(f"column {column!r} holds samples of different shapes in one batch; group the "
                           "dataset by shape or resize the inputs first") from exc
