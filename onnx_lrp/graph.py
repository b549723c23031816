"""Loading an ONNX model and viewing it as a networkx DAG of ops.

:func:`load_model` reads a path or ``ModelProto`` (external data too), checks it and brings it to
one opset. :class:`ModelGraph` is the canonized model plus what the compiler needs: constants,
probed shapes and dtypes of every tensor, the data input, the explained output, and a
``networkx.DiGraph`` whose nodes are the ops that carry relevance.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import numpy as np
import onnx
from onnx import version_converter

from .canonize._edit import reads
from .errors import InvalidInput, ModelLoadError
from .screen import screen
from .weights import WeightStore, detach, tensor_value

#: Opset every model is brought to before compiling; emitted nodes use its semantics.
MIN_OPSET = 17
FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
               onnx.TensorProto.BFLOAT16}


def load_model(model) -> tuple[onnx.ModelProto, str]:
    """Read ``model`` (path or ModelProto), check it and bring it to at least :data:`MIN_OPSET`.

    Returns the model and a label naming where it came from, for messages.
    """
    proto, label = _read(model)
    return _prepare(proto, label), label


def load_detached(model) -> tuple[onnx.ModelProto, str, WeightStore]:
    """As :func:`load_model`, with the large weights moved out of the protobuf into the
    returned store (see :mod:`onnx_lrp.weights`); keep the store alive while the model is used."""
    proto, label = _read(model)
    store = WeightStore()
    detach(proto, store)
    # a fresh message: the parsed one keeps the weights' bytes in its arena until it is freed
    light = onnx.ModelProto.FromString(proto.SerializeToString())
    del proto
    return _prepare(light, label), label, store


@dataclass
class ReadModel:
    """A model file already read by :func:`read_model`, handed to :func:`load_model` /
    :func:`load_detached` (or an :class:`~onnx_lrp.Explainer`) without a copy: the reader gives it
    up. What the command line uses so that the file is read once for its metadata and its graph."""

    proto: onnx.ModelProto
    label: str

    @classmethod
    def read(cls, path) -> "ReadModel":
        return cls(read_model(path), str(path))


def _read(model) -> tuple[onnx.ModelProto, str]:
    if isinstance(model, ReadModel):
        proto, model.proto = model.proto, None  # handed over: the caller's copy is not kept alive
        if proto is None:
            raise ModelLoadError(f"model {model.label!r} was already handed over once; read it again")
        return proto, model.label
    if isinstance(model, onnx.ModelProto):
        screen(model, "<ModelProto>")
        proto = onnx.ModelProto()
        proto.CopyFrom(model)
        return proto, "<ModelProto>"
    proto, label = _read_source(model)
    screen(proto, label)
    return proto, label


def _prepare(proto: onnx.ModelProto, label: str) -> onnx.ModelProto:
    _check(proto, label)
    proto = _upgrade_opset(proto, label)
    _drop_initializer_inputs(proto)
    _name_nodes(proto)
    return proto


def _read_source(model) -> tuple[onnx.ModelProto, str]:
    """A model given as a path or as serialized bytes, with the label messages use for it."""
    if isinstance(model, (bytes, bytearray)):
        try:
            return onnx.load_model_from_string(bytes(model)), "<bytes>"
        except Exception as exc:  # protobuf raises several unrelated types
            raise ModelLoadError(f"cannot parse the given {len(model)} bytes as an ONNX model "
                                 f"({type(exc).__name__}: {exc}){_depth_hint(exc)}") from exc
    if not isinstance(model, (str, os.PathLike)):
        raise ModelLoadError(f"cannot load a model from {type(model).__name__} {model!r}; pass the path of an "
                             ".onnx file, an onnx.ModelProto or its serialized bytes")
    return read_model(model), str(model)


def read_model(path, external_data: bool = True) -> onnx.ModelProto:
    """The one reader of model files: ``path`` parsed, with its external weights unless
    ``external_data=False`` (enough for metadata and input shapes)."""
    path = Path(os.fspath(path))
    if path.is_dir():
        raise ModelLoadError(f"model path {str(path)!r} is a directory; pass the path of an .onnx file")
    if not path.is_file():
        raise ModelLoadError(f"model file {str(path)!r} does not exist; pass the path of an .onnx file")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises several unrelated types
        raise ModelLoadError(
            f"cannot read {str(path)!r} as an ONNX model ({type(exc).__name__}: {exc}){_depth_hint(exc)}; "
            "is it a complete .onnx file?") from exc
    if external_data:
        screen(proto, str(path))  # the declared sizes, before reading what the files hold
        try:
            onnx.external_data_helper.load_external_data_for_model(proto, str(path.parent))
        except Exception as exc:  # missing files, paths outside the folder, symlinks, short files
            raise ModelLoadError(
                f"cannot read the external data of {str(path)!r} ({type(exc).__name__}: {exc}); the data files "
                "must lie in the model's folder (no links out of it) and be complete") from exc
    return proto


def _depth_hint(exc: Exception) -> str:
    if "MaxDepth" in str(exc) or "recursion" in str(exc).lower():
        return (" (its messages nest deeper than protobuf reads: subgraphs inside subgraphs more than about "
                "30 levels deep)")
    return ""


def _check(proto: onnx.ModelProto, label: str) -> None:
    if not proto.graph.node:
        raise ModelLoadError(f"{label!r} holds no graph nodes; is it an ONNX model file?")
    try:
        onnx.checker.check_model(_checkable(proto))
    except Exception as exc:
        raise ModelLoadError(f"{label!r} is not a valid ONNX model: {exc}") from exc


def _checkable(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The checker insists on reading external data; in-memory weights become typed inputs."""
    stubs = [t for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if not stubs:
        return proto
    view = onnx.ModelProto()
    view.CopyFrom(proto)
    names = {t.name for t in stubs}
    kept = [t for t in view.graph.initializer if t.name not in names]
    del view.graph.initializer[:]
    view.graph.initializer.extend(kept)
    declared = {i.name for i in view.graph.input}
    view.graph.input.extend(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                            for t in stubs if t.name not in declared)
    return view


def opset_of(proto: onnx.ModelProto) -> int:
    for imp in proto.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    return 1


def _upgrade_opset(proto: onnx.ModelProto, label: str) -> onnx.ModelProto:
    if opset_of(proto) >= MIN_OPSET:
        return proto
    try:
        return version_converter.convert_version(proto, MIN_OPSET)
    except Exception as exc:
        raise ModelLoadError(
            f"cannot convert {label!r} from opset {opset_of(proto)} to {MIN_OPSET} ({exc}); "
            f"re-export the model at opset >= {MIN_OPSET}") from exc


def _drop_initializer_inputs(proto: onnx.ModelProto) -> None:
    """IR < 4 models list weights as graph inputs too; they are constants, not inputs."""
    inits = {t.name for t in proto.graph.initializer}
    keep = [i for i in proto.graph.input if i.name not in inits]
    del proto.graph.input[:]
    proto.graph.input.extend(keep)
    # without them the model is valid only from IR 4 on; the version converter leaves the IR
    # version alone, so raise it to what the (converted) opset needs
    needed = onnx.helper.find_min_ir_version_for(list(proto.opset_import), ignore_unknown=True)
    proto.ir_version = max(proto.ir_version, needed, 4)


def _name_nodes(proto: onnx.ModelProto) -> None:
    """Give every node a unique name: errors and overrides refer to nodes by name."""
    seen: set[str] = set()
    for i, node in enumerate(proto.graph.node):
        name = node.name or f"{node.op_type}_{i}"
        while name in seen:
            name = f"{name}_{i}"
        node.name = name
        seen.add(name)


def initializers(proto: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: tensor_value(t) for t in proto.graph.initializer}


def data_input(proto: onnx.ModelProto, label: str, name: str | None = None) -> onnx.ValueInfoProto:
    """The graph input that takes the data (the one to explain); error if ambiguous."""
    inputs = list(proto.graph.input)
    if name is not None:
        picked = next((vi for vi in inputs if vi.name == name), None)
        if picked is None:
            raise InvalidInput(f"{label!r} has no input {name!r}; its inputs are {[i.name for i in inputs]!r}")
    else:
        floats = [vi for vi in inputs if vi.type.tensor_type.elem_type in FLOAT_TYPES]
        if not floats:
            raise InvalidInput(f"{label!r} has no floating-point input to explain; inputs: "
                               f"{[i.name for i in inputs]!r}")
        if len(floats) > 1:
            raise InvalidInput(f"{label!r} has several inputs {[i.name for i in floats]!r}; "
                               "name the one to explain with input_name=...")
        picked = floats[0]
    _check_float32(picked, label)
    return picked


def _check_float32(vi: onnx.ValueInfoProto, label: str) -> None:
    """The explainer graph is built for float32 data; say so before compiling fails obscurely."""
    elem = vi.type.tensor_type.elem_type
    if elem != onnx.TensorProto.FLOAT:
        kind = onnx.TensorProto.DataType.Name(elem) if elem in onnx.TensorProto.DataType.values() else elem
        raise InvalidInput(f"input {vi.name!r} of {label!r} has element type {kind}; onnx-lrp explains float32 "
                           "inputs: convert the model to float32, or pick another input with input_name=")


def declared_shape(vi: onnx.ValueInfoProto) -> list:
    """Dims of a graph input: ints where fixed, strings (or None) where symbolic."""
    dims = []
    for d in vi.type.tensor_type.shape.dim:
        dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or None))
    return dims


@dataclass
class ModelGraph:
    """A canonized model specialised to one input shape, as the compiler sees it."""

    model: onnx.ModelProto
    label: str
    input_name: str
    output_name: str
    consts: dict[str, np.ndarray]
    shapes: dict[str, tuple]
    dtypes: dict[str, np.dtype]
    dag: nx.DiGraph = field(default_factory=nx.DiGraph)
    nodes: dict[str, onnx.NodeProto] = field(default_factory=dict)
    producer: dict[str, str] = field(default_factory=dict)
    relevant: set[str] = field(default_factory=set)
    _memo: dict = field(default_factory=dict, repr=False)
    _order_cache: dict | None = field(default=None, repr=False)

    @classmethod
    def build(cls, model, label, input_name, output_name, shapes, dtypes) -> "ModelGraph":
        g = cls(model, label, input_name, output_name, initializers(model), shapes, dtypes)
        g._index()
        return g

    def _index(self) -> None:
        for node in self.model.graph.node:
            self.nodes[node.name] = node
            for out in node.output:
                if out:
                    self.producer[out] = node.name
        self._mark_relevant()
        for node in self.model.graph.node:
            if self.is_relevant_node(node):
                self.dag.add_node(node.name)
                for tensor in node.input:
                    if tensor in self.relevant and tensor in self.producer:
                        self.dag.add_edge(self.producer[tensor], node.name, tensor=tensor)

    def _mark_relevant(self) -> None:
        """A tensor carries relevance if it is floating point and computed from the data input
        through at least one floating-point tensor; integer shape arithmetic carries none."""
        self.relevant = {self.input_name}
        for node in self.model.graph.node:  # ONNX requires topological order
            # reads() includes what If/Loop bodies read from outside: such a node depends on the data
            # too, and must meet a handler (or an UnsupportedOp) rather than silently drop relevance
            if any(t in self.relevant for t in reads(node)):
                for out in node.output:
                    if out and self.is_float(out):
                        self.relevant.add(out)

    def is_float(self, tensor: str) -> bool:
        dt = self.dtypes.get(tensor)
        return dt is not None and np.issubdtype(dt, np.floating)

    def is_relevant_node(self, node: onnx.NodeProto) -> bool:
        return any(t in self.relevant for t in node.output)

    def memo(self, kind: str, node: onnx.NodeProto, compute):
        """A per-node fact computed once for this graph (``compute()``), e.g. a handler's
        interpolation matrices or a product's pattern; ``kind`` keeps different facts apart."""
        key = (kind, node.name)
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def relevant_inputs(self, node: onnx.NodeProto) -> list[int]:
        return [i for i, t in enumerate(node.input) if t in self.relevant]

    def const(self, tensor: str) -> np.ndarray | None:
        return self.consts.get(tensor)

    def shape(self, tensor: str) -> tuple:
        if tensor in self.shapes:
            return self.shapes[tensor]
        if tensor in self.consts:
            return self.consts[tensor].shape
        raise KeyError(tensor)

    def topo_nodes(self) -> list[onnx.NodeProto]:
        return [self.nodes[n] for n in nx.lexicographical_topological_sort(
            self.dag, key=lambda n: self._order[n])]

    @property
    def _order(self) -> dict[str, int]:
        if self._order_cache is None:
            self._order_cache = {n.name: i for i, n in enumerate(self.model.graph.node)}
        return self._order_cache
