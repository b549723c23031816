"""Writing files atomically, the one way onnx-lrp writes a result.

The content goes to a temporary file beside the target, which is then renamed over it, so that a
failure never leaves a half-written file and an existing file stays as it was.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import OutputError


def write_atomic(path, write, what: str = "") -> Path:
    """Call ``write(binary_file)`` on a temporary file beside ``path``, then rename it to ``path``.

    ``what`` names the content in errors (``"PNG "``). Raises :class:`OutputError` naming the path
    when the directory is missing or not writable, or the write fails (e.g. a full disk).
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {what}{str(path)!r}: directory {str(path.parent)!r} is missing or not "
                          f"writable ({exc.strerror or exc}); create it or choose another path") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be as readable as any file
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass  # already gone, or the directory vanished; the original error matters more
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {what}{str(path)!r} ({exc.strerror or exc}); is the disk full? "
                              "choose another path") from exc
        raise
    return path


def write_text(path, text: str, what: str = "") -> Path:
    """:func:`write_atomic` for UTF-8 text."""
    data = text.encode("utf-8")
    return write_atomic(path, lambda handle: handle.write(data), what)
