"""A one-line progress bar on stderr (no dependencies), drawn only on a terminal."""
from __future__ import annotations

import shutil
import sys
import time


class Progress:
    """``[######....] 12/50 files  3.1 s  name``, redrawn in place with a carriage return.

    Parameters
    ----------
    total : int
        Number of steps.
    enabled : bool, optional
        Draw the bar; default: when ``stream`` is a terminal and there is more than one step.
    stream : file, default sys.stderr
    unit : str
        What a step is, for the bar's text.
    """

    def __init__(self, total: int, enabled: bool | None = None, stream=None, unit: str = "files"):
        self.total, self.done, self.unit = total, 0, unit
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            enabled = total > 1 and _isatty(self.stream)
        self.enabled = enabled
        self.start = time.perf_counter()
        self._drawn = False

    def advance(self, steps: int = 1, item: str = "") -> None:
        self.done += steps
        self._draw(item)

    def write(self, line: str, file=None) -> None:
        """Print a line (a warning, a result; on ``file``, default the bar's stream) without garbling the bar."""
        self._clear()
        print(line, file=file if file is not None else self.stream, flush=True)
        if self.enabled and self.done:
            self._draw("")

    def close(self) -> None:
        self._clear()

    def _draw(self, item: str) -> None:
        if not self.enabled:
            return
        width = shutil.get_terminal_size((80, 20)).columns
        cells = 24
        filled = cells * self.done // max(self.total, 1)
        elapsed = time.perf_counter() - self.start
        text = f"[{'#' * filled}{'.' * (cells - filled)}] {self.done}/{self.total} {self.unit}  {elapsed:.1f} s  {item}"
        self.stream.write("\r" + text[:width - 1].ljust(width - 1))
        self.stream.flush()
        self._drawn = True

    def _clear(self) -> None:
        if self._drawn:
            width = shutil.get_terminal_size((80, 20)).columns
            self.stream.write("\r" + " " * (width - 1) + "\r")
            self.stream.flush()
            self._drawn = False


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
