"""Loading an ONNX model and viewing it as a networkx DAG of ops.

:func:`load_model` reads a path or ``ModelProto`` (external data too), checks it and brings it to
one opset. :class:`ModelGraph` is the canonized model plus what the compiler needs: constants,
probed shapes and dtypes of every tensor, the data input, the explained output, and a
``networkx.DiGraph`` whose nodes are the ops that carry relevance.
"""
from __future__ import annotations

import heapq
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import numpy as np
import onnx
from onnx import version_converter

from .canonize._edit import reads
from .errors import InvalidInput, ModelLoadError
from .names import did_you_mean
from .screen import screen
from .weights import WeightStore, detach, is_stub, tensor_value

#: Opset every model is brought to before compiling; emitted nodes use its semantics.
MIN_OPSET = 17
FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
               onnx.TensorProto.BFLOAT16}
#: Quantized ops whose integer outputs still carry relevance: a QuantizeLinear's (on to the
#: DequantizeLinear of an activation's fake quantization), and the integer-only forms, so that they
#: meet their handler (which refuses them by name) instead of silently cutting the relevance path.
INTEGER_CARRIERS = {"QuantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
                    "MatMulInteger", "QLinearAdd", "QLinearMul", "QLinearConcat", "QLinearSigmoid",
                    "QLinearLeakyRelu", "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearSoftmax",
                    "QGemm", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QLinearWhere", "QLinearReduceMean"}


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
    proto, label = _read_any(model)
    _check_text(proto, label)
    return proto, label


def _check_text(message, label: str, where: str = "model") -> None:
    """Every string field holds UTF-8 text. The protobuf parser hands a damaged one (one flipped
    bit in a name) over as bytes, which the checker accepts and any later edit of the model
    chokes on with a UnicodeDecodeError."""
    if isinstance(message, onnx.TensorProto):  # ListFields would copy the weights' bytes
        fields = [(message.DESCRIPTOR.fields_by_name[name], getattr(message, name))
                  for name in ("name", "doc_string", "external_data")]
    else:
        fields = message.ListFields()
    for field, value in fields:
        if field.type not in (field.TYPE_STRING, field.TYPE_MESSAGE):
            continue
        items = list(value) if field.is_repeated else [value]
        for i, item in enumerate(items):
            here = f"{where}.{field.name}" + (f"[{i}]" if field.is_repeated else "")
            if field.type == field.TYPE_MESSAGE:
                _check_text(item, label, here)
            elif isinstance(item, bytes):
                raise ModelLoadError(f"{label!r} is not a valid ONNX model: {here} is not UTF-8 text ({item[:60]!r}); "
                                     "the file is damaged or was written incorrectly: re-export it")


def _read_any(model) -> tuple[onnx.ModelProto, str]:
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
    sort_nodes(proto)
    _check(proto, label)
    proto = _upgrade_opset(proto, label)
    _drop_initializer_inputs(proto)
    _name_nodes(proto)
    return proto


def sort_nodes(proto: onnx.ModelProto) -> None:
    """Put the graph's nodes in topological order, in place, keeping the given order wherever it is one.

    ONNX requires that order, but some tools write nodes after their consumers (onnxruntime's float16
    converter appends its Casts at the end). A graph with a cycle is left as it is, for the checker
    to report."""
    nodes = list(proto.graph.node)
    made_by = {t: i for i, node in enumerate(nodes) for t in node.output if t}
    needs = [{made_by[t] for t in reads(node) if t in made_by} - {i} for i, node in enumerate(nodes)]
    if all(i > max(deps, default=-1) for i, deps in enumerate(needs)):
        return
    users: dict[int, list[int]] = {}
    for i, deps in enumerate(needs):
        for j in deps:
            users.setdefault(j, []).append(i)
    waiting = [len(deps) for deps in needs]
    ready = [i for i, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:  # always the earliest ready node: an already ordered stretch stays as it was
        i = heapq.heappop(ready)
        order.append(i)
        for u in users.get(i, []):
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    if len(order) < len(nodes):
        return  # a cycle
    del proto.graph.node[:]
    proto.graph.node.extend(nodes[i] for i in order)


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
    _check_element_types(proto, label)


def _check_element_types(proto: onnx.ModelProto, label: str) -> None:
    """The checker lets an initializer of an unknown element type through (one flipped bit in a
    file); reading its value later would fail with a bare KeyError."""
    known = set(onnx.TensorProto.DataType.values()) - {onnx.TensorProto.UNDEFINED}
    for tensor in proto.graph.initializer:
        if tensor.data_type not in known:
            raise ModelLoadError(f"{label!r} is not a valid ONNX model: initializer {tensor.name!r} has the unknown "
                                 f"element type {tensor.data_type}; the file is damaged or was written incorrectly: "
                                 "re-export it")


#: Ops onnxruntime defines in the default ONNX domain, which the checker does not know (its
#: transformer optimizer writes them; canonization expands them, see onnx_lrp.canonize.contrib_ops).
ORT_DEFAULT_DOMAIN_OPS = {"SimplifiedLayerNormalization"}


def _checkable(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The checker insists on reading external data; in-memory weights become typed inputs. It
    also rejects onnxruntime's ops in the default domain: the view files them under com.microsoft."""
    stubs = [t for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    ort_ops = any(n.op_type in ORT_DEFAULT_DOMAIN_OPS and n.domain in ("", "ai.onnx") for n in proto.graph.node)
    if not stubs and not ort_ops:
        return proto
    view = onnx.ModelProto()
    view.CopyFrom(proto)
    if ort_ops:
        for node in view.graph.node:
            if node.op_type in ORT_DEFAULT_DOMAIN_OPS and node.domain in ("", "ai.onnx"):
                node.domain = "com.microsoft"
        if all(o.domain != "com.microsoft" for o in view.opset_import):
            view.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
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


def initializers(proto: onnx.ModelProto) -> "InitializerValues":
    return InitializerValues(proto)


class InitializerValues(Mapping):
    """The model's initializers by name, read when asked: a detached weight is looked up in its
    store each time, so that holding this mapping does not keep an array alive after the store
    swapped it for its memory-mapped copy (see :meth:`onnx_lrp.weights.WeightStore.spill`)."""

    def __init__(self, proto: onnx.ModelProto):
        self._tensors = {t.name: t for t in proto.graph.initializer}
        self._inline: dict[str, np.ndarray] = {}  # small ones, parsed once (the same object each time)

    def __getitem__(self, name: str) -> np.ndarray:
        tensor = self._tensors[name]
        if is_stub(tensor):
            return tensor_value(tensor)
        if name not in self._inline:
            self._inline[name] = tensor_value(tensor)
        return self._inline[name]

    def __iter__(self):
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)


INT_TYPES = {onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.INT16, onnx.TensorProto.INT8,
             onnx.TensorProto.UINT8, onnx.TensorProto.UINT16, onnx.TensorProto.UINT32, onnx.TensorProto.UINT64}


def data_input(proto: onnx.ModelProto, label: str, name: str | None = None) -> onnx.ValueInfoProto:
    """The first graph input to explain (see :func:`explained_inputs`)."""
    return explained_inputs(proto, label, name)[0]


def explained_inputs(proto: onnx.ModelProto, label: str, names=None) -> list[onnx.ValueInfoProto]:
    """The graph inputs to explain: those named, else the one floating-point input, else the
    integer input named ``input_ids``, else the integer inputs that index an embedding table
    (or are one-hot encoded in the graph)."""
    inputs = list(proto.graph.input)
    if names is not None:
        names = [names] if isinstance(names, str) else list(names)
        by_name = {vi.name: vi for vi in inputs}
        unknown = [n for n in names if n not in by_name]
        if unknown or not names:
            wrong = unknown[0] if unknown else None
            raise InvalidInput(f"{label!r} has no input {wrong!r}{did_you_mean(wrong, by_name)}; its inputs are "
                               f"{list(by_name)!r}")
        picked = [by_name[n] for n in names]
    else:
        picked = _default_inputs(proto, label, inputs)
    for vi in picked:
        _check_explainable(vi, label)
    return picked


def _default_inputs(proto, label, inputs) -> list[onnx.ValueInfoProto]:
    floats = [vi for vi in inputs if vi.type.tensor_type.elem_type in FLOAT_TYPES]
    if len(floats) > 1:
        raise InvalidInput(f"{label!r} has several inputs {[i.name for i in floats]!r}; name the one(s) to "
                           "explain with input_name=NAME or [NAMES] and pass the others as feeds=")
    if floats:
        return floats
    ints = [vi for vi in inputs if vi.type.tensor_type.elem_type in INT_TYPES]
    named = [vi for vi in ints if vi.name == "input_ids"]
    if named:
        return named
    indexing = [vi for vi in ints if vi.name in _embedding_indices(proto)]
    if indexing:
        return indexing
    raise InvalidInput(f"{label!r} has no floating-point input and no integer input indexing an embedding "
                       f"table; inputs: {[i.name for i in inputs]!r}; name the one to explain with input_name=")


def _embedding_indices(proto: onnx.ModelProto) -> set[str]:
    """Graph inputs that reach the indices of a Gather on a floating-point initializer, or a
    one-hot encoding (OneHot, or Equal against the vocabulary), through integer ops only (Cast,
    Reshape, Unsqueeze, Expand...)."""
    tables = {t.name for t in proto.graph.initializer if t.data_type in FLOAT_TYPES}
    origin = {vi.name: {vi.name} for vi in proto.graph.input if vi.type.tensor_type.elem_type in INT_TYPES}
    found = set()
    for node in proto.graph.node:
        sources = set().union(*(origin.get(t, set()) for t in node.input))
        if not sources:
            continue
        if node.op_type == "Gather" and node.input[0] in tables and node.input[1] in origin:
            found |= origin[node.input[1]]
        elif node.op_type in ("OneHot", "Equal"):  # a one-hot encoding (then a dense layer)
            found |= sources
        elif node.op_type in ("Cast", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Identity", "Add", "Clip",
                              "Expand", "Tile"):
            for out in node.output:
                origin[out] = sources
    return found


def _check_explainable(vi: onnx.ValueInfoProto, label: str) -> None:
    """The explainer graph is built for float32 data (or integer data whose first floating-point
    tensor is explained); say so before compiling fails obscurely."""
    elem = vi.type.tensor_type.elem_type
    if elem == onnx.TensorProto.FLOAT or elem in INT_TYPES:
        return
    kind = onnx.TensorProto.DataType.Name(elem) if elem in onnx.TensorProto.DataType.values() else elem
    raise InvalidInput(f"input {vi.name!r} of {label!r} has element type {kind}; onnx-lrp explains float32 "
                       "and integer inputs: convert the model to float32, or pick another input with input_name=")


def start_tensor(model: onnx.ModelProto, name: str, dtypes: dict) -> str:
    """Where the explanation of graph input ``name`` starts: the input itself when it is
    floating point; for integer data (token ids, bytes), which cannot carry relevance, the first
    floating-point tensor computed from it (an embedding Gather on a float table preferred, else
    a Cast, OneHot or comparison made float)."""
    if np.issubdtype(dtypes[name], np.floating):
        return name
    derived, candidates = {name}, []
    for node in model.graph.node:
        if not any(t in derived for t in node.input):
            continue
        for out in node.output:
            if not out or out not in dtypes:
                continue
            if np.issubdtype(dtypes[out], np.floating):
                table = node.op_type == "Gather" and node.input[0] not in derived
                candidates.append((not table, len(candidates), out))
            else:
                derived.add(out)
    if not candidates:
        raise InvalidInput(f"no floating-point tensor is computed from the integer input {name!r}; nothing to "
                           "explain there: pick another input with input_name=")
    return min(candidates)[2]


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
    consts: Mapping[str, np.ndarray]
    shapes: dict[str, tuple]
    dtypes: dict[str, np.dtype]
    #: explained graph input -> the tensor its explanation starts at (itself, or for integer data
    #: the first floating-point tensor computed from it)
    sources: dict[str, str] = field(default_factory=dict)
    #: graph input -> its batch axis (None: it has none, e.g. a scalar fed whole); default 0
    batch_axes: dict[str, int | None] = field(default_factory=dict)
    #: False for a model explained with batch_axis=None: no tensor's axis 0 is a batch there
    batched: bool = True
    #: the shapes of every tensor at a second batch size (called once, when first needed), or None
    #: for a fixed batch: then every tensor's batch is taken to be axis 0
    shapes_at_other_batch: Callable[[], dict[str, tuple]] | None = None
    #: the batch size the explained input declares, when it is a fixed number
    fixed_batch: int | None = None
    dag: nx.DiGraph = field(default_factory=nx.DiGraph)
    nodes: dict[str, onnx.NodeProto] = field(default_factory=dict)
    producer: dict[str, str] = field(default_factory=dict)
    relevant: set[str] = field(default_factory=set)
    _memo: dict = field(default_factory=dict, repr=False)
    _order_cache: dict | None = field(default=None, repr=False)
    #: what must live as long as this graph: the :class:`onnx_lrp.sessions.Lease` of its shape
    lease: object = field(default=None, repr=False, compare=False)

    @classmethod
    def build(cls, model, label, input_name, output_name, shapes, dtypes, explained=None,
              batch_axes=None) -> "ModelGraph":
        """``explained``: the graph inputs to explain (default ``[input_name]``)."""
        explained = list(explained or [input_name])
        sources = {name: start_tensor(model, name, dtypes) for name in explained}
        g = cls(model, label, explained[0], output_name, initializers(model), shapes, dtypes, sources,
                dict(batch_axes or {}))
        g._index()
        return g

    @property
    def source(self) -> str:
        """The tensor the first explained input's explanation starts at."""
        return self.sources[self.input_name]

    @property
    def feeds(self) -> list[str]:
        """Graph inputs that are not explained: given as they are, constants to the rules."""
        return [i.name for i in self.model.graph.input if i.name not in self.sources]

    def _index(self) -> None:
        for node in self.model.graph.node:
            self.nodes[node.name] = node
            for out in node.output:
                if out:
                    self.producer[out] = node.name
        self._mark_relevant()
        starts = set(self.sources.values())  # relevance stops there: their producers read no data
        for node in self.model.graph.node:
            if self.is_relevant_node(node) and any(t in self.relevant for t in reads(node)):
                self.dag.add_node(node.name)
                for tensor in node.input:
                    if tensor in self.relevant and tensor in self.producer and tensor not in starts:
                        self.dag.add_edge(self.producer[tensor], node.name, tensor=tensor)

    def _mark_relevant(self) -> None:
        """A tensor carries relevance if it is floating point and computed from the data input
        through at least one floating-point tensor; integer shape arithmetic carries none."""
        self.relevant = set(self.sources.values())
        for node in self.model.graph.node:  # ONNX requires topological order
            # reads() includes what If/Loop bodies read from outside: such a node depends on the data
            # too, and must meet a handler (or an UnsupportedOp) rather than silently drop relevance
            if any(t in self.relevant for t in reads(node)):
                carrier = node.op_type in INTEGER_CARRIERS
                for out in node.output:
                    if out and (carrier or self.is_float(out)):
                        self.relevant.add(out)

    def is_batch_axis(self, tensor: str, axis: int) -> bool:
        """Whether ``axis`` of ``tensor`` holds the samples (ops must not mix along it): the axes whose
        size changes with the batch, read off runs at two batch sizes; exporters move the batch
        (paddle2onnx splits q, k, v along axis 0 of a (3, batch, heads, L, d) tensor), and an axis the
        batch was merged into counts too. Axis 0 where that is unknown (see :meth:`batch_axes_of`);
        none where a run holds one sample (:meth:`holds_one_sample`)."""
        if not self.batched or self.holds_one_sample():
            return False
        axis %= max(len(self.shape(tensor)), 1)
        axes = self.batch_axes_of(tensor)
        return axis == 0 if axes is None else axis in axes

    def holds_one_sample(self) -> bool:
        """Whether every run of the model holds a single sample: a batch of 1 fixed in the declared
        input, or baked into the graph so that it does not run at batch 2 (a Reshape to
        (1, ...); the explainer then runs one sample at a time). No op can mix samples then, so
        no axis is refused as a batch axis: torchvision's ViT exported at batch 1 moves its batch
        inside ``nn.MultiheadAttention`` ((L, N, E), q, k, v stacked in front) where the second
        probe cannot see it."""
        if not self.batched:
            return False
        if self.fixed_batch is not None:
            return self.fixed_batch == 1
        return self.batch_probe_failed(ask=True)

    def batch_probe_failed(self, ask: bool = False) -> bool:
        """Whether the run at the second batch size failed (the model runs at batch 1 only);
        ``ask=False`` answers False without running it when nothing asked before."""
        if ask:
            self._other_batch_shapes()
        return self._memo.get("other_batch_shapes", {}) is None and self.shapes_at_other_batch is not None

    def _other_batch_shapes(self) -> dict[str, tuple] | None:
        if "other_batch_shapes" not in self._memo:
            try:
                other = self.shapes_at_other_batch() if self.shapes_at_other_batch else None
            except InvalidInput:
                other = None
            self._memo["other_batch_shapes"] = other
        return self._memo["other_batch_shapes"]

    def batch_axes_of(self, tensor: str) -> tuple[int, ...] | None:
        """The axes of ``tensor`` whose size differs between the two probed batch sizes (none for a
        constant); None where unknown: a fixed batch, or a model that does not run at batch 2 (a
        batch of 1 baked into a Reshape)."""
        shapes = self._other_batch_shapes()
        if shapes is None:
            return None
        other = shapes.get(tensor)
        mine = self.shapes.get(tensor)
        if other is None or mine is None or len(other) != len(mine):
            return ()
        return tuple(i for i, (a, b) in enumerate(zip(mine, other)) if a != b)

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
