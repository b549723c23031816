"""Indexed, in-place editing of a model's main graph for the canonization passes.

A pass asks, node after node, who writes a tensor, who reads it and whether a name is taken,
and it renames tensors as it folds nodes away. Answering each question by walking the whole
graph made canonization quadratic in the graph size (a 9,000-node chain took minutes).
:class:`GraphEditor` indexes the graph once and keeps the index current through its own edit
operations, so a pass costs time linear in the graph; node removals and insertions are recorded
and written to the protobuf once, by :meth:`GraphEditor.commit`.

Rules for passes: change a node's inputs and outputs, the initializers and the graph outputs only
through the editor, never by assigning ``node.input[i]`` directly, or the index goes stale.
Attributes and op types may be changed directly. Writers are the main graph's nodes; readers are
their input slots and, once per node, the If/Loop/Scan bodies that read a tensor of the enclosing
scope (see :func:`reads`): such a tensor cannot be renamed (:meth:`GraphEditor.read_in_subgraph`).
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx

from ..weights import make_initializer, store_of, tensor_value


class NameAllocator:
    """Fresh names that differ from every name it was given or handed out.

    :meth:`fresh` returns ``base`` if free, else the first free of ``base_1``, ``base_2``, ...;
    a counter per base means asking again never rescans the suffixes already taken.
    """

    def __init__(self, taken: Iterable[str] = ()):
        self._taken = set(taken)
        self._next: dict[str, int] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._taken

    def add(self, name: str) -> None:
        self._taken.add(name)

    def fresh(self, base: str) -> str:
        name, i = base, self._next.get(base, 0)
        if i:
            name = f"{base}_{i}"
        while name in self._taken:
            i += 1
            name = f"{base}_{i}"
        self._next[base] = i
        self._taken.add(name)
        return name


class GraphEditor:
    """A model whose main graph is edited in place through an index kept current by each edit.

    Parameters
    ----------
    model : onnx.ModelProto
        Edited in place (passes hand it a copy). Until :meth:`commit`, ``model.graph.node``
        still lists the removed nodes and lacks the inserted ones.
    """

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        graph = model.graph
        self._nodes = list(graph.node)
        self._removed: set[int] = set()
        self._before: dict[int, list[onnx.NodeProto]] = {}
        self._producer: dict[str, onnx.NodeProto] = {}
        self._readers: dict[str, dict[int, list]] = {}  # tensor -> {id(node): [node, times read]}
        self._body_readers: dict[str, dict[int, onnx.NodeProto]] = {}  # read inside a node's subgraphs
        self._inits: dict[str, int] = {}
        for i, tensor in enumerate(graph.initializer):
            self._inits.setdefault(tensor.name, i)
        self._outputs: dict[str, list[onnx.ValueInfoProto]] = {}
        for out in graph.output:
            self._outputs.setdefault(out.name, []).append(out)
        #: Names of the graph inputs (never changed by the passes).
        self.inputs = frozenset(i.name for i in graph.input)
        self._names: NameAllocator | None = None  # built on the first fresh(): most passes need none
        self._store = store_of(model)
        self._open = True
        producer, readers = self._producer, self._readers
        for node in self._nodes:  # _index inlined: this loop is most of a pass's fixed cost
            key = id(node)
            for t in node.input:
                if t:
                    entry = readers.setdefault(t, {}).get(key)
                    if entry is None:
                        readers[t][key] = [node, 1]
                    else:
                        entry[1] += 1
            for t in node.output:
                if t:
                    producer[t] = node
            if node.attribute:
                self._index_bodies(node)

    # --- queries ------------------------------------------------------------------------
    def nodes(self) -> list[onnx.NodeProto]:
        """The nodes in graph order, inserted ones included, removed ones not; a new list, so the
        caller may edit while iterating it."""
        out: list[onnx.NodeProto] = []
        for node in self._nodes:
            self._emit(node, out)
        return out

    def producer(self, tensor: str) -> onnx.NodeProto | None:
        """The node writing ``tensor``, None for a graph input, an initializer or an unknown name."""
        return self._producer.get(tensor)

    def consumers(self, tensor: str) -> list[onnx.NodeProto]:
        """The nodes reading ``tensor``, a node once per input slot that names it and once more
        when its subgraphs read it."""
        slots = [node for node, times in self._readers.get(tensor, {}).values() for _ in range(times)]
        return slots + list(self._body_readers.get(tensor, {}).values())

    def read_in_subgraph(self, tensor: str) -> bool:
        """Whether an If/Loop/Scan body reads ``tensor`` from the enclosing scope (it cannot be renamed)."""
        return tensor in self._body_readers

    def is_output(self, tensor: str) -> bool:
        return tensor in self._outputs

    def const(self, name: str) -> np.ndarray | None:
        """The value of initializer ``name``, None when there is none."""
        i = self._inits.get(name)
        return None if i is None else tensor_value(self.model.graph.initializer[i])

    # --- edits --------------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        """A tensor name not used anywhere in the model (subgraphs included), reserved."""
        if self._names is None:
            # the graph as edited so far: renames happened in place, removed nodes are still
            # listed (their names stay taken), inserted nodes are not listed yet
            taken = _tensor_names(self.model.graph)
            for node in self.nodes():
                taken.update(node.input)
                taken.update(node.output)
            self._names = NameAllocator(taken)
        return self._names.fresh(base)

    def set_const(self, name: str, array: np.ndarray) -> None:
        """Add or replace initializer ``name``."""
        # np.asarray, not np.ascontiguousarray: the latter turns a scalar into shape (1,), which
        # changes the rank of e.g. a Gather with a scalar index or an Unsqueeze of a scalar size
        tensor = make_initializer(name, np.asarray(array), self._store)
        inits = self.model.graph.initializer
        i = self._inits.get(name)
        if i is None:
            self._inits[name] = len(inits)
            inits.append(tensor)
            self._taken(name)
        else:
            inits[i].CopyFrom(tensor)

    def set_input(self, node: onnx.NodeProto, index: int, tensor: str) -> None:
        """Input slot ``index`` of ``node`` reads ``tensor``; ``index == len(node.input)`` appends."""
        if index == len(node.input):
            node.input.append(tensor)
        else:
            self._unread(node, node.input[index])
            node.input[index] = tensor
        self._read(node, tensor)

    def set_output(self, node: onnx.NodeProto, index: int, tensor: str) -> None:
        """Output ``index`` of ``node`` is named ``tensor`` (readers of the old name are not moved)."""
        old = node.output[index]
        if self._producer.get(old) is node:
            del self._producer[old]
        node.output[index] = tensor
        if tensor:
            self._producer[tensor] = node
            self._taken(tensor)

    def rename_uses(self, old: str, new: str) -> None:
        """Every reader of tensor ``old``, and a graph output named ``old``, uses ``new`` instead.
        Raises ValueError when a subgraph reads ``old`` (check :meth:`read_in_subgraph` first)."""
        if old == new:
            return
        if old in self._body_readers:
            raise ValueError(f"tensor {old!r} is read inside a subgraph and cannot be renamed")
        for node, _ in list(self._readers.pop(old, {}).values()):
            for i, t in enumerate(node.input):
                if t == old:
                    node.input[i] = new
                    self._read(node, new)
        for out in self._outputs.pop(old, []):
            out.name = new
            self._outputs.setdefault(new, []).append(out)
        self._taken(new)

    def rename_tensor(self, old: str, new: str) -> None:
        """Tensor ``old`` is called ``new`` everywhere: its producer's output or initializer, its
        readers and a graph output."""
        if old == new:
            return
        node = self._producer.get(old)
        if node is not None:
            self.set_output(node, list(node.output).index(old), new)
        i = self._inits.pop(old, None)
        if i is not None:
            self.model.graph.initializer[i].name = new
            self._inits.setdefault(new, i)
        self.rename_uses(old, new)

    def remove(self, node: onnx.NodeProto) -> None:
        """Drop ``node`` from the graph (written by :meth:`commit`); it no longer reads or writes."""
        if id(node) in self._removed:
            return
        self._removed.add(id(node))
        for t in node.input:
            self._unread(node, t)
        if node.attribute:
            for t in _outer_reads(node):
                readers = self._body_readers.get(t, {})
                readers.pop(id(node), None)
                if not readers:
                    self._body_readers.pop(t, None)
        for t in node.output:
            if t and self._producer.get(t) is node:
                del self._producer[t]

    def insert_before(self, anchor: onnx.NodeProto, nodes: Iterable[onnx.NodeProto]) -> None:
        """Put ``nodes`` (new NodeProtos) just before ``anchor`` in graph order."""
        nodes = list(nodes)
        self._before.setdefault(id(anchor), []).extend(nodes)
        for node in nodes:
            self._index(node)

    def commit(self) -> onnx.ModelProto:
        """Write the node list to the model (once) and return it; the editor is done after this."""
        if not self._open:
            raise RuntimeError("GraphEditor.commit() was called twice")
        self._open = False
        if self._removed or self._before:
            nodes = self.nodes()
            graph = self.model.graph
            del graph.node[:]
            graph.node.extend(nodes)
        return self.model

    # --- index upkeep -------------------------------------------------------------------
    def _index(self, node: onnx.NodeProto) -> None:
        for t in node.input:
            self._read(node, t)
        for t in node.output:
            if t:
                self._producer[t] = node
                self._taken(t)
        if node.attribute:
            self._index_bodies(node)

    def _index_bodies(self, node: onnx.NodeProto) -> None:
        for t in _outer_reads(node):
            self._body_readers.setdefault(t, {})[id(node)] = node

    def _taken(self, name: str) -> None:
        if self._names is not None:
            self._names.add(name)

    def _read(self, node: onnx.NodeProto, tensor: str) -> None:
        if tensor:
            entry = self._readers.setdefault(tensor, {}).setdefault(id(node), [node, 0])
            entry[1] += 1
            self._taken(tensor)

    def _unread(self, node: onnx.NodeProto, tensor: str) -> None:
        readers = self._readers.get(tensor)
        entry = readers.get(id(node)) if readers else None
        if entry is None:
            return
        entry[1] -= 1
        if not entry[1]:
            del readers[id(node)]
            if not readers:
                del self._readers[tensor]

    def _emit(self, node: onnx.NodeProto, out: list) -> None:
        for new in self._before.get(id(node), ()):
            self._emit(new, out)
        if id(node) not in self._removed:
            out.append(node)


def reads(node: onnx.NodeProto) -> set[str]:
    """Tensors ``node`` reads, including those its subgraphs (If/Loop/Scan bodies) read from the
    enclosing scope; a name a subgraph defines itself is over-approximated as read, which only
    keeps more. Walked without recursion: subgraphs may nest deeper than Python's stack."""
    names = set(node.input)
    names.discard("")
    if not node.attribute:
        return names
    stack = [node]
    while stack:
        current = stack.pop()
        names.update(t for t in current.input if t)
        for a in current.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                stack.extend(a.g.node)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for g in a.graphs:
                    stack.extend(g.node)
    return names



def needed_by(roots, producer) -> set[int]:
    """``id()`` of every node the tensors ``roots`` depend on; ``producer(tensor)`` gives the node
    writing a tensor (None for inputs and initializers). Subgraph reads count, as in :func:`reads`."""
    needed, stack = set(), list(roots)
    while stack:
        node = producer(stack.pop())
        if node is None or id(node) in needed:
            continue
        needed.add(id(node))
        stack.extend(reads(node))
    return needed

def _outer_reads(node: onnx.NodeProto) -> set[str]:
    """What ``node``'s subgraphs read (over-approximated as in :func:`reads`), its own inputs aside."""
    if not any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
        return set()
    return reads(node) - set(node.input)


def _tensor_names(graph: onnx.GraphProto) -> set[str]:
    """Every tensor name of ``graph`` and of the subgraphs of its nodes, walked without recursion
    (subgraphs may nest deeply)."""
    names: set[str] = set()
    stack = [graph]
    while stack:
        g = stack.pop()
        names.update(t.name for t in g.initializer)
        names.update(v.name for v in g.input)
        names.update(v.name for v in g.output)
        for node in g.node:
            names.update(node.input)
            names.update(node.output)
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    stack.append(a.g)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    stack.extend(a.graphs)
    names.discard("")
    return names
