"""Large initializers live in memory, outside the protobuf.

Copying, serialising and re-parsing a model with hundreds of MB of weights dominates start-up
time, so after loading, every large initializer is replaced in the ``ModelProto`` by a *stub*: a
tensor marked as external data whose location ``onnx-lrp-memory/<store>/<key>`` names an array in
a :class:`WeightStore`. Graph passes read values with :func:`tensor_value` and write new ones with
:func:`make_initializer`; onnxruntime receives the arrays with ``add_external_initializers``
(:func:`external_arrays`); :func:`materialize` turns stubs back into ordinary tensors to save a
standalone model.
"""
from __future__ import annotations

import itertools
import uuid
import weakref

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import ModelLoadError

_PREFIX = "onnx-lrp-memory/"
#: Arrays smaller than this stay inside the protobuf (shapes, scalars, small biases).
MIN_DETACHED_BYTES = 16384
_STORES: "weakref.WeakValueDictionary[str, WeightStore]" = weakref.WeakValueDictionary()


class WeightStore:
    """Arrays of the stubs of one model family (a model and everything derived from it)."""

    def __init__(self):
        self.id = uuid.uuid4().hex
        self.arrays: dict[str, np.ndarray] = {}
        self._keys = itertools.count()
        _STORES[self.id] = self

    def stub(self, name: str, array: np.ndarray) -> onnx.TensorProto:
        key = str(next(self._keys))
        self.arrays[key] = np.ascontiguousarray(array)
        tensor = onnx.TensorProto(name=name, data_type=onnx.helper.np_dtype_to_tensor_dtype(array.dtype))
        tensor.dims.extend(array.shape)
        tensor.data_location = onnx.TensorProto.EXTERNAL
        entry = tensor.external_data.add()
        entry.key, entry.value = "location", f"{_PREFIX}{self.id}/{key}"
        return tensor


def _stub_location(tensor: onnx.TensorProto) -> str | None:
    if tensor.data_location != onnx.TensorProto.EXTERNAL:
        return None
    for entry in tensor.external_data:
        if entry.key == "location" and entry.value.startswith(_PREFIX):
            return entry.value[len(_PREFIX):]
    return None


def tensor_value(tensor: onnx.TensorProto) -> np.ndarray:
    """The array of an initializer, stub or not."""
    location = _stub_location(tensor)
    if location is None:
        return numpy_helper.to_array(tensor)
    store_id, key = location.split("/", 1)
    return _STORES[store_id].arrays[key]


def store_of(model: onnx.ModelProto) -> WeightStore | None:
    for tensor in model.graph.initializer:
        location = _stub_location(tensor)
        if location is not None:
            return _STORES[location.split("/", 1)[0]]
    return None


def make_initializer(name: str, array: np.ndarray, store: WeightStore | None) -> onnx.TensorProto:
    array = np.asarray(array)  # not ascontiguousarray: it turns a 0-d scalar into shape (1,)
    if store is not None and array.nbytes >= MIN_DETACHED_BYTES:
        return store.stub(name, array)
    return numpy_helper.from_array(array, name)


def detach(model: onnx.ModelProto, store: WeightStore) -> None:
    """Replace the model's large initializers by stubs (in place)."""
    for i, tensor in enumerate(model.graph.initializer):
        if _stub_location(tensor) is None and _nbytes(tensor) >= MIN_DETACHED_BYTES:
            try:
                array = numpy_helper.to_array(tensor)
            except Exception as exc:  # noqa: BLE001 - data that does not match the dims or type
                raise ModelLoadError(f"initializer {tensor.name!r} cannot be read ({type(exc).__name__}: {exc}); "
                                     "its data does not match its dims and type") from exc
            model.graph.initializer[i].CopyFrom(store.stub(tensor.name, array))


def _nbytes(tensor: onnx.TensorProto) -> int:
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        return 0  # real external data was loaded by onnx.load; anything left is not ours
    count = int(np.prod(tensor.dims, dtype=np.int64)) if tensor.dims else 1
    return count * 4


def external_arrays(model: onnx.ModelProto) -> tuple[list[str], list[np.ndarray]]:
    names, arrays = [], []
    for tensor in model.graph.initializer:
        if _stub_location(tensor) is not None:
            names.append(tensor.name)
            arrays.append(tensor_value(tensor))
    return names, arrays


def materialize(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with every stub replaced by an ordinary tensor."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for i, tensor in enumerate(out.graph.initializer):
        if _stub_location(tensor) is not None:
            out.graph.initializer[i].CopyFrom(numpy_helper.from_array(tensor_value(tensor), tensor.name))
    return out
