"""Explaining a directory with reading, explaining and writing overlapped.

::

    reader threads ──► main thread ───────────────► writer threads ──► main thread
    decode, preprocess   batch, Explainer.explain     encode PNG/NPY,    record in input order
    (image files)        (onnxruntime's threads)      JSON, HTML cards   (results, lines, report)

Each stage holds a bounded number of inputs (:class:`Threads`: by default a batch each, so about
three batches in all), so memory stays bounded however many files there are. Only the main thread
touches the run's state: it names inputs and records results, errors and progress in input order,
so a run's files, lines and report are those of a run one input at a time
(``Threads(readers=0, writers=0)`` is that run). Nothing waits on a queue
that a failed thread should have filled: every hand-over is a future, and a failure in a reader or
writer is raised in the main thread when its turn comes, after which the pools are shut down.

A stop (:class:`StopSignal`: SIGINT/SIGTERM) ends reading; inputs already explained finish writing
(every file is written atomically) and are recorded; inputs not yet explained are dropped.
"""
from __future__ import annotations

import os
import signal
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from .errors import OnnxLrpError
from .inputs import IMAGE_SUFFIXES, Sample

ENV = "ONNX_LRP_PIPELINE"

#: a write job: runs on a writer thread, returns the action that records its input (main thread)
Job = Callable[[], Callable[[], None]]


@dataclass(frozen=True)
class Stages:
    """What the pipeline does with inputs; see the module docstring for which thread runs what.

    read : path -> the file's :class:`Sample` s, and callables recording its errors, in order
        (reader thread for image files, else the main thread, lazily)
    admit : sample -> a job standing for it (e.g. its outputs exist already), or None to explain it
    explain : samples (one shape) -> one job per sample
    done : path -> None, recorded once every input of the file is recorded
    """

    read: Callable[[Path], Iterable]
    admit: Callable[[Sample], Job | None]
    explain: Callable[[list[Sample]], list[Job]]
    done: Callable[[Path], None]


@dataclass(frozen=True)
class Threads:
    """Pipeline threads (0: that stage runs inline on the main thread) and how far each runs ahead."""

    readers: int = 1
    writers: int = 1
    #: image files decoded ahead of the explainer, and explained inputs waiting to be written and
    #: recorded; None: a batch each, so a run holds about three batches (read, explained, written)
    read_ahead: int | None = None
    write_behind: int | None = None

    @classmethod
    def for_cores(cls, cores: int | None = None) -> "Threads":
        """A reader and a writer, plus a writer for every 4 cores beyond 4 (writing costs more than reading);
        the environment variable ``ONNX_LRP_PIPELINE=READERS,WRITERS`` overrides them (``0,0``: the stages
        one after the other, as ``tools/bench_dataset.py --sequential`` compares)."""
        given = os.environ.get(ENV)
        if given:
            try:
                readers, writers = (int(n) for n in given.split(","))
            except ValueError:
                raise OnnxLrpError(f"{ENV}={given!r}: expected READERS,WRITERS (thread counts), e.g. 1,2") from None
            return cls(readers=readers, writers=writers)
        cores = cores or os.cpu_count() or 1
        return cls(readers=1, writers=1 + max(0, cores - 4) // 4)


def run(files: list[Path], stages: Stages, batch_size: int, threads: Threads = Threads(), stop=None) -> int:
    """Explain ``files`` through ``stages``; returns how many files were recorded completely (all of
    them unless ``stop`` — anything with ``is_set()`` — was set)."""
    stop = stop or threading.Event()
    with _pool(threads.readers, "onnx-lrp-read") as readers, _pool(threads.writers, "onnx-lrp-write") as writers:
        outbox = _Outbox(writers, (threads.write_behind or batch_size) + batch_size)
        batch: list[tuple[Sample, _Slot]] = []
        for path, items in _read_ahead(files, stages.read, readers, threads.read_ahead or batch_size):
            for item in items:
                if stop.is_set():
                    break
                if not isinstance(item, Sample):
                    outbox.add(action=item)
                elif (job := stages.admit(item)) is not None:
                    outbox.add(job=job)
                else:
                    if batch and batch[0][0].x.shape != item.x.shape:
                        _flush(batch, stages, outbox)
                    batch.append((item, outbox.add()))
                    if len(batch) >= batch_size:
                        _flush(batch, stages, outbox)
                outbox.record()
            else:
                outbox.add(action=lambda path=path: stages.done(path), file_done=True)
            if stop.is_set():
                break
        if batch and not stop.is_set():
            _flush(batch, stages, outbox)
        return outbox.finish()


def _flush(batch: list, stages: Stages, outbox: "_Outbox") -> None:
    """Explain the batch (main thread) and hand its inputs to the writers."""
    jobs = stages.explain([sample for sample, _ in batch])
    for (_, slot), job in zip(batch, jobs, strict=True):
        outbox.submit(slot, job)
    batch.clear()


def _read_ahead(files: list[Path], read, pool, ahead: int):
    """(path, items) in file order; image files are read (decoded, preprocessed) ahead on the pool,
    other files (arrays, read through memory maps) lazily when their turn comes."""
    pending: deque = deque()
    remaining = iter(files)
    try:
        while True:
            while len(pending) < max(ahead, 1) and (path := next(remaining, None)) is not None:
                eager = path.suffix.lower() in IMAGE_SUFFIXES
                pending.append((path, pool.submit(list, read(path)) if eager else read(path)))
            if not pending:
                return
            path, items = pending.popleft()
            yield path, items.result() if isinstance(items, Future) else items
    finally:
        for _, items in pending:
            if isinstance(items, Future):
                items.cancel()


@dataclass
class _Slot:
    """One input's place in the output order: its write job's future, or a ready action."""

    future: Future | None = None
    action: Callable[[], None] | None = None
    file_done: bool = False  # the marker recorded after a file's last input

    @property
    def waiting(self) -> bool:  # not yet explained: nothing to wait for yet
        return self.future is None and self.action is None


class _Outbox:
    """Inputs in input order, each waiting for its write job; records them in that order."""

    def __init__(self, pool, limit: int):
        self.pool, self.limit = pool, max(limit, 1)
        self.slots: deque[_Slot] = deque()
        self.files_done = 0

    def add(self, job: Job | None = None, action=None, file_done: bool = False) -> _Slot:
        slot = _Slot(action=action, file_done=file_done)
        self.slots.append(slot)
        if job is not None:
            self.submit(slot, job)
        return slot

    def submit(self, slot: _Slot, job: Job) -> None:
        slot.future = self.pool.submit(job)

    def record(self) -> None:
        """Record the inputs at the head that are written; wait for the head while too many are in flight."""
        while self.slots and not self.slots[0].waiting:
            head = self.slots[0]
            if head.future is not None and not head.future.done() and len(self.slots) <= self.limit:
                return
            self.slots.popleft()
            action = head.action if head.future is None else head.future.result()
            if action is not None:
                action()
            self.files_done += head.file_done

    def finish(self) -> int:
        """Record every input up to the first one never explained (a stop); the rest is dropped."""
        self.limit = 0  # wait for each
        self.record()
        self.slots.clear()
        return self.files_done


class _Inline:
    """An executor that runs each job at once on the calling thread (a stage with 0 threads)."""

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # raised where the result is read, as a pool's would be
            future.set_exception(exc)
        return future

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def _pool(workers: int, name: str):
    if workers <= 0:
        return _Inline()
    return _Pool(max_workers=workers, thread_name_prefix=name)


class _Pool(ThreadPoolExecutor):
    """A thread pool that, when left (normally or by an error), drops queued jobs and waits for running ones."""

    def __exit__(self, *exc) -> None:
        self.shutdown(wait=True, cancel_futures=True)


# --- stopping on SIGINT / SIGTERM --------------------------------------------------------------
class StopSignal:
    """While entered, SIGINT and SIGTERM set this flag instead of ending the process (a second one ends
    it as usual); ``signum`` says which came. Outside the main thread it installs nothing.

    ``exit_code`` is the shell's convention: 128 + the signal's number (130 for SIGINT, 143 for SIGTERM).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict = {}

    def is_set(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int | None:
        return None if self.signum is None else 128 + self.signum

    def _handle(self, signum, frame) -> None:
        self.signum = signum
        for sig, previous in self._previous.items():  # a second signal ends the run at once
            signal.signal(sig, previous)

    def __enter__(self) -> "StopSignal":
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}
