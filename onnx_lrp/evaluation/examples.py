"""The first few samples of an evaluation kept whole, with every method's relevance map, so that a
report can show the methods side by side (:func:`onnx_lrp.html.evaluation_html`)."""
from __future__ import annotations

import numpy as np

from . import metrics as M


class Examples:
    """Keeps the first ``limit`` samples: name, input (1, ...), target, mask, and per method label
    the relevance map (channels summed, float32). Memory: ``limit`` inputs and maps per method."""

    def __init__(self, limit: int):
        self.limit = max(0, int(limit))
        self.samples: list[dict] = []
        self._new: list[dict] = []

    def start_batch(self, batch, x: np.ndarray, targets: np.ndarray, masks: list) -> None:
        """Take the batch's first samples while fewer than ``limit`` are kept."""
        k = min(len(batch), self.limit - len(self.samples))
        self._new = [{"name": item.name, "input": np.array(x[i:i + 1]), "target": int(targets[i]),
                      "mask": masks[i], "maps": {}} for i, item in enumerate(batch[:max(k, 0)])]
        self.samples += self._new

    def add(self, label: str, relevance: np.ndarray, channel_axis=M.AUTO) -> None:
        """Record method ``label``'s relevance for the samples taken from the current batch."""
        if not self._new:
            return
        maps = M.relevance_map(relevance[:len(self._new)], channel_axis)
        for sample, rmap in zip(self._new, maps):
            sample["maps"][label] = rmap.astype(np.float32)
