"""Large initializers live outside the protobuf, held once.

Copying, serialising and re-parsing a model with hundreds of MB of weights dominates start-up
time, so after loading, every large initializer is replaced in the ``ModelProto`` by a *stub*: a
tensor marked as external data whose location ``onnx-lrp-memory/<store>/<key>`` names an array in
a :class:`WeightStore`. Graph passes read values with :func:`tensor_value` and write new ones with
:func:`make_initializer`; :func:`materialize` turns stubs back into ordinary tensors to save a
standalone model.

onnxruntime copies every initializer handed over in memory (``add_external_initializers``,
``add_external_initializers_from_files_in_memory`` and inline tensors alike), which held each
weight twice. It memory-maps external data *files* instead, so before a session is made the store
writes its arrays once to a scratch file (:meth:`WeightStore.spill`, in /dev/shm where it has
room, else the temporary folder) and swaps them for read-only memory maps of that file: the arrays and onnxruntime's weights are then the same pages of the
page cache, and every later session (other shapes, ``keep_layers``, gradients) maps them again.
The folder's name holds the host and process id, so that a process killed before it could delete its
folder (SIGKILL, the out-of-memory killer) does not leave memory taken for good: the next store to
spill of a process on that host removes the folders of processes that no longer exist
(:func:`sweep_orphans`).

Arrays derived for one input shape (folded shape arithmetic, a rule's modified weights) are
recorded while that shape is built (:meth:`WeightStore.recording`) and released with it
(:meth:`WeightStore.release`, see :mod:`onnx_lrp.sessions`): their pages of the scratch file are
freed and reused, so that a long run over many shapes keeps the file as large as the shapes it
still holds. :meth:`WeightStore.close` deletes the file.
"""
from __future__ import annotations

import ctypes
import itertools
import os
import shutil
import socket
import tempfile
import threading
import uuid
import weakref
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import ModelLoadError

_PREFIX = "onnx-lrp-memory/"
#: Arrays smaller than this stay inside the protobuf (shapes, scalars, small biases).
MIN_DETACHED_BYTES = 16384
#: Arrays start at multiples of this in the scratch file (a page, so that each maps on its own).
_ALIGN = 4096
_STORES: "weakref.WeakValueDictionary[str, WeightStore]" = weakref.WeakValueDictionary()


#: A memory-backed file system for the scratch files: writing there is a memory copy, where a disk
#: would make the first session wait for the write-back on a busy machine.
_SHM = "/dev/shm"


def _scratch_root(nbytes: int) -> str | None:
    """/dev/shm when it is a writable folder with room for twice ``nbytes`` (containers often give
    it 64 MB), else None: the system's temporary folder (``TMPDIR``)."""
    try:
        stat = os.statvfs(_SHM)
    except OSError:
        return None
    room = stat.f_bavail * stat.f_frsize
    return _SHM if room >= 2 * nbytes and os.access(_SHM, os.W_OK) else None


_FOLDER = "onnx-lrp-weights-"


def _host_prefix() -> str:
    """The start of this host's scratch folder names (a host's names only, since /dev/shm may be
    shared by containers whose process ids overlap)."""
    host = "".join(c if c.isalnum() or c in "-." else "_" for c in socket.gethostname())
    return f"{_FOLDER}{host}-"


def _folder_prefix() -> str:
    """This process's scratch folder name up to its random part: host and process id."""
    return f"{_host_prefix()}{os.getpid()}-"


def sweep_orphans(root: str | None) -> list[Path]:
    """Remove the scratch folders in ``root`` (None: the temporary folder) that processes of this host
    left behind when they were killed; returns them. A folder whose process is alive is kept."""
    root_path = Path(root or tempfile.gettempdir())
    this_host = _host_prefix()
    removed = []
    try:
        candidates = [p for p in root_path.iterdir() if p.name.startswith(this_host)]
    except OSError:
        return removed
    for folder in candidates:
        pid = folder.name[len(this_host):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)) and _owned(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _owned(folder: Path) -> bool:
    try:
        return folder.is_dir() and folder.stat().st_uid == os.getuid()
    except OSError:  # removed meanwhile
        return False


_swept = threading.Event()


def _sweep_once() -> None:
    """:func:`sweep_orphans` in both scratch roots, at the first spill of the process."""
    if not _swept.is_set():
        _swept.set()
        for root in (_SHM, None):
            sweep_orphans(root)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, but belongs to someone else
        return True
    return True


class WeightStore:
    """Arrays of the stubs of one model family (a model and everything derived from it)."""

    def __init__(self):
        self.id = uuid.uuid4().hex
        self.arrays: dict[str, np.ndarray] = {}
        self._keys = itertools.count()
        self._dir: Path | None = None
        self._remove_dir = None  # the finalizer that deletes the scratch folder
        self._spilled: dict[str, tuple[int, int]] = {}  # key -> (offset, length) in the scratch file
        self._size = 0
        self._free: list[tuple[int, int]] = []  # page-aligned [start, end) of the file no array uses
        self._released: list[str] = []  # keys to forget at the next chance (see release)
        self._recorders = threading.local()
        self._lock = threading.Lock()
        _STORES[self.id] = self

    @property
    def file(self) -> Path | None:
        """The scratch file the arrays were written to, or None before :meth:`spill`."""
        return self._dir / "weights.bin" if self._dir is not None else None

    def spill(self) -> Path:
        """Write the arrays not yet in the scratch file to it and replace them by read-only memory
        maps of it, so that their memory is shared with onnxruntime's (which maps the same file).

        Raises OSError when the file cannot be written (the arrays are then left as they were).
        """
        with self._lock:
            self._drain()
            arrays = self.arrays.copy()
            pending = [k for k in arrays if k not in self._spilled]
            if self._dir is None:
                need = sum(arrays[k].nbytes for k in pending)
                _sweep_once()
                self._dir = Path(tempfile.mkdtemp(prefix=_folder_prefix(), dir=_scratch_root(need)))
                self._remove_dir = weakref.finalize(self, shutil.rmtree, str(self._dir), True)
            if pending:
                self._append(pending)
            return self.file

    def _append(self, keys: list[str]) -> None:
        placed = {}
        with open(self.file, "r+b" if self.file.exists() else "wb") as handle:
            for key in keys:  # at explicit offsets: a failed write leaves nothing to misalign
                array = np.ascontiguousarray(self.arrays[key])
                offset = self._place(array.nbytes)
                handle.seek(offset)
                handle.write(array.reshape(-1).view(np.uint8))
                placed[key] = (offset, array.nbytes)
        for key, (offset, length) in placed.items():
            array = self.arrays[key]
            self.arrays[key] = np.memmap(self.file, array.dtype, "r", offset, array.shape)
            self._spilled[key] = (offset, length)

    def _place(self, nbytes: int) -> int:
        """The offset for an array of ``nbytes``: the first freed range it fits in, else the end."""
        for i, (start, end) in enumerate(self._free):
            if end - start >= nbytes:
                rest = _aligned(start + nbytes)
                self._free[i:i + 1] = [(rest, end)] if rest < end else []
                return start
        offset = _aligned(self._size)
        self._size = offset + nbytes
        return offset

    def recording(self, keys: list[str]):
        """A context in which every array this thread stores has its key appended to ``keys`` (to
        :meth:`release` them together later)."""
        return _Recording(self._recorders, keys)

    def release(self, keys) -> None:
        """Forget the arrays of ``keys`` (no stub may refer to them any more) and free their pages
        of the scratch file for reuse. Safe from a finalizer: when another call holds the store,
        the keys are forgotten at the next :meth:`spill`, :meth:`release` or :meth:`close`."""
        self._released.extend(keys)
        if self._lock.acquire(blocking=False):
            try:
                self._drain()
            finally:
                self._lock.release()

    def _drain(self) -> None:
        """Forget the released keys (under the lock)."""
        while self._released:
            key = self._released.pop()
            self.arrays.pop(key, None)
            span = self._spilled.pop(key, None)
            if span is not None:
                self._free_range(span[0], _aligned(span[0] + span[1]))

    def _free_range(self, start: int, end: int) -> None:
        """Give the file's pages [start, end) back to the system and keep them for reuse."""
        _punch_hole(self.file, start, end)
        ranges = sorted(self._free + [(start, end)])
        merged = [ranges[0]]
        for lo, hi in ranges[1:]:
            if lo <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
            else:
                merged.append((lo, hi))
        if merged[-1][1] >= _aligned(self._size):  # the tail: appending starts there again
            self._size = merged.pop()[0]
        self._free = merged

    def close(self) -> None:
        """Delete the scratch file. Arrays already mapped from it stay readable (the system keeps
        a deleted file's pages while they are mapped); a later :meth:`spill` writes a new one."""
        with self._lock:
            self._drain()
            if self._remove_dir is not None:
                self._remove_dir()
            self._dir, self._remove_dir = None, None
            self._spilled, self._free, self._size = {}, [], 0

    def used_bytes(self) -> int:
        """Bytes of arrays held (in memory or in the scratch file)."""
        return sum(a.nbytes for a in self.arrays.copy().values())

    def retain(self, models) -> int:
        """Drop the arrays that none of ``models`` refers to (e.g. convolution weights from before a
        BatchNorm fold), so that they are neither held nor written to the scratch file. Arrays made
        later are kept as usual. Returns the bytes freed."""
        wanted = {key for model in models for key in _store_keys(model, self.id)}
        with self._lock:
            unused = [k for k in self.arrays if k not in wanted and k not in self._spilled]
            freed = sum(self.arrays[k].nbytes for k in unused)
            for key in unused:
                del self.arrays[key]
        return freed

    def file_location(self, key: str) -> tuple[int, int]:
        """(offset, length) of a spilled array in :attr:`file`."""
        return self._spilled[key]

    def stub(self, name: str, array: np.ndarray) -> onnx.TensorProto:
        key = str(next(self._keys))
        self.arrays[key] = np.ascontiguousarray(array)
        recording = getattr(self._recorders, "keys", None)
        if recording:
            recording[-1].append(key)
        tensor = onnx.TensorProto(name=name, data_type=onnx.helper.np_dtype_to_tensor_dtype(array.dtype))
        tensor.dims.extend(array.shape)
        tensor.data_location = onnx.TensorProto.EXTERNAL
        entry = tensor.external_data.add()
        entry.key, entry.value = "location", f"{_PREFIX}{self.id}/{key}"
        return tensor


class _Recording:
    """See :meth:`WeightStore.recording`; nested recordings credit the innermost."""

    def __init__(self, recorders: threading.local, keys: list[str]):
        self._recorders, self._keys = recorders, keys

    def __enter__(self):
        if not hasattr(self._recorders, "keys"):
            self._recorders.keys = []
        self._recorders.keys.append(self._keys)
        return self._keys

    def __exit__(self, *exc):
        self._recorders.keys.pop()
        return False


def _aligned(offset: int) -> int:
    return -(-offset // _ALIGN) * _ALIGN


def _fallocate():
    try:
        fallocate = ctypes.CDLL(None, use_errno=True).fallocate
    except (OSError, AttributeError):  # not Linux
        return None
    fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    return fallocate


_FALLOCATE = _fallocate()
_PUNCH_HOLE = 0x01 | 0x02  # FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE


def _punch_hole(path: Path | None, start: int, end: int) -> None:
    """Free the pages of ``path`` in [start, end) (they read as zeros); where the file system
    cannot, the range is only reused."""
    if _FALLOCATE is None or path is None or end <= start:
        return
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return
    try:
        _FALLOCATE(fd, _PUNCH_HOLE, start, end - start)
    finally:
        os.close(fd)


def _stub_location(tensor: onnx.TensorProto) -> str | None:
    if tensor.data_location != onnx.TensorProto.EXTERNAL:
        return None
    for entry in tensor.external_data:
        if entry.key == "location" and entry.value.startswith(_PREFIX):
            return entry.value[len(_PREFIX):]
    return None


def _store_keys(model: onnx.ModelProto, store_id: str):
    """Keys of the arrays of store ``store_id`` that the model's stubs name (subgraphs included)."""
    graphs = [model.graph]
    while graphs:  # without recursion: subgraphs may nest deeper than Python's stack
        graph = graphs.pop()
        for tensor in graph.initializer:
            location = _stub_location(tensor)
            if location is not None and location.startswith(store_id + "/"):
                yield location.split("/", 1)[1]
        for node in graph.node:
            for a in node.attribute:
                graphs.extend([a.g] if a.type == onnx.AttributeProto.GRAPH else a.graphs)


def is_stub(tensor: onnx.TensorProto) -> bool:
    """Whether the initializer is a stub whose array lives in a :class:`WeightStore`."""
    return _stub_location(tensor) is not None


def tensor_value(tensor: onnx.TensorProto) -> np.ndarray:
    """The array of an initializer, stub or not."""
    location = _stub_location(tensor)
    if location is None:
        return numpy_helper.to_array(tensor)
    store_id, key = location.split("/", 1)
    try:
        return _STORES[store_id].arrays[key]
    except KeyError:
        raise ModelLoadError(f"initializer {tensor.name!r}: its array was dropped from the weight store as no "
                             "compiled model used it; keep a model that refers to it (e.g. the canonized "
                             "model) to read it") from None


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


def stores_of(model: onnx.ModelProto) -> list[WeightStore]:
    """The stores the model's stubs point into."""
    ids = {loc.split("/", 1)[0] for loc in map(_stub_location, model.graph.initializer) if loc is not None}
    return [_STORES[i] for i in sorted(ids)]


def file_backed(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose stubs point into their store's scratch file (see
    :meth:`WeightStore.spill`) as ordinary ONNX external data, for a model file saved beside it."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for tensor in out.graph.initializer:
        location = _stub_location(tensor)
        if location is None:
            continue
        store_id, key = location.split("/", 1)
        offset, length = _STORES[store_id].file_location(key)
        del tensor.external_data[:]
        for name, value in (("location", "weights.bin"), ("offset", str(offset)), ("length", str(length))):
            entry = tensor.external_data.add()
            entry.key, entry.value = name, value
    return out


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
