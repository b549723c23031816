"""A bounded, thread-safe cache of the programs compiled for each input shape.

An explainer compiles one onnxruntime graph per input shape (the relevance sweep is specialised
to the shapes). Each costs memory: the session (its graph, kernels and arena, ~10-15 MB even for a
0.6 MB model), the probed :class:`~onnx_lrp.graph.ModelGraph`, and the weights the compiler derives
for that shape (folded shape arithmetic, modified weights of the rules), held in the model's
:class:`~onnx_lrp.weights.WeightStore` and its scratch file. Inputs of ever new shapes (text of
every length, photographs of every size) would grow that without bound, so the cache keeps the
programs of the ``size`` most recently used shapes and forgets the least recently used one.

An evicted shape's memory is given back once nothing uses it any more: each shape holds a
:class:`Lease` that its graph, its compiled programs and their sessions all refer to, and the
weights created while building that shape are released from the store (their pages of the
scratch file freed) when the last of them is gone. A thread still running an evicted shape's
session, or a caller holding its :class:`~onnx_lrp.compile.Compiled`, keeps it valid until done.
"""
from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Callable

from .errors import InvalidInput
from .weights import WeightStore

#: Shapes whose programs an explainer keeps unless told otherwise (``Explainer(cache_size=...)``).
DEFAULT_CACHE_SIZE = 8


class Lease:
    """Keeps the store entries created for one input shape alive: they are released when the
    lease is garbage, i.e. when the cache and every graph, program and session of that shape
    (each refers to the lease) are gone."""

    def __init__(self, store: WeightStore | None):
        self.created: list[str] = []  # store keys created while building this shape
        if store is not None:
            weakref.finalize(self, store.release, self.created)

    def hold(self, obj):
        """Tie ``obj`` (a graph, a program, a session) to this lease; returns ``obj``. Graphs and
        programs have a ``lease`` field; an onnxruntime session gets an attribute."""
        name = "lease" if "lease" in getattr(obj, "__dataclass_fields__", {}) else "_onnx_lrp_lease"
        setattr(obj, name, self)
        return obj


class ShapeEntry:
    """What one input shape needs: its probed graph and its programs by variant (e.g. LRP with
    or without layers, the gradient), each ``(Compiled, session)``."""

    def __init__(self, lease: Lease):
        self.lease = lease
        self.graph = None
        self.programs: dict[tuple, tuple] = {}


class SessionCache:
    """The :class:`ShapeEntry` of the ``size`` most recently used input shapes.

    Parameters
    ----------
    size : int or None
        How many shapes to keep (default :data:`DEFAULT_CACHE_SIZE`); None keeps every shape, for
        a model that only ever sees a few. Each kept shape costs one onnxruntime session per
        program variant used (tens of MB for a small CNN, hundreds for a large one).
    store : WeightStore or None
        The store of the model's detached weights; what a shape adds to it is released with it.

    :attr:`lock` serialises building and compiling (threads asking for the same new shape
    compile it once); running a session needs no lock.
    """

    def __init__(self, size: int | None = DEFAULT_CACHE_SIZE, store: WeightStore | None = None):
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise InvalidInput(f"cache_size={size!r}: give a positive number of input shapes to keep compiled "
                               f"(default {DEFAULT_CACHE_SIZE}), or None to keep every shape")
        self.size = size
        self.store = store
        self.lock = threading.RLock()
        self.evictions = 0
        self._entries: OrderedDict[tuple, ShapeEntry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key) -> bool:
        return key in self._entries

    def keys(self) -> list[tuple]:
        """The cached shape keys, least recently used first."""
        with self.lock:
            return list(self._entries)

    def programs(self) -> int:
        """How many compiled programs (sessions) the cached shapes hold."""
        with self.lock:
            return sum(len(e.programs) for e in self._entries.values())

    def most_recent(self) -> ShapeEntry | None:
        with self.lock:
            return next(reversed(self._entries.values()), None)

    def graph(self, key: tuple, build: Callable):
        """The graph of shape ``key``, made by ``build()`` on first use."""
        with self.lock:
            entry = self._entry(key)
            if entry.graph is None:
                try:
                    with self._recording(entry):
                        entry.graph = entry.lease.hold(build())
                except BaseException:
                    del self._entries[key]  # a shape that cannot be built takes no place
                    raise
            return entry.graph

    def program(self, key: tuple, variant: tuple, build_graph: Callable, compile_program: Callable) -> tuple:
        """``(Compiled, session)`` of shape ``key`` and ``variant``; ``compile_program(graph)``
        makes it on first use."""
        with self.lock:
            graph = self.graph(key, build_graph)
            entry = self._entries[key]
            if variant not in entry.programs:
                with self._recording(entry):
                    compiled, session = compile_program(graph)
                entry.programs[variant] = (entry.lease.hold(compiled), entry.lease.hold(session))
            return entry.programs[variant]

    def clear(self) -> None:
        """Forget every shape (their memory is released once nothing else uses it)."""
        with self.lock:
            self._entries.clear()

    def _entry(self, key: tuple) -> ShapeEntry:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            return entry
        entry = self._entries[key] = ShapeEntry(Lease(self.store))
        while self.size is not None and len(self._entries) > self.size:
            self._entries.popitem(last=False)
            self.evictions += 1
        return entry

    def _recording(self, entry: ShapeEntry):
        if self.store is None:
            return _NoRecording()
        return self.store.recording(entry.lease.created)


class _NoRecording:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
