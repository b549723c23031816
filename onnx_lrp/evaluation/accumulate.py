"""Running sums, so that memory stays bounded however many samples stream through."""
from __future__ import annotations

import math

import numpy as np

from . import metrics as M

class RunningMean:
    """Mean and standard deviation of a stream of values, NaNs skipped."""

    def __init__(self):
        self.n, self.total, self.sq = 0, 0.0, 0.0

    def add(self, values) -> None:
        v = np.asarray(values, np.float64).reshape(-1)
        v = v[np.isfinite(v)]
        self.n += len(v)
        self.total += float(v.sum())
        self.sq += float((v * v).sum())

    def result(self) -> dict:
        if not self.n:
            return {"mean": float("nan"), "std": float("nan"), "n": 0}
        mean = self.total / self.n
        return {"mean": mean, "std": math.sqrt(max(self.sq / self.n - mean * mean, 0.0)), "n": self.n}


class MeanCurves:
    """Mean MoRF / LeRF perturbation curves over every sample added."""

    def __init__(self):
        self.n, self.fraction, self.morf, self.lerf = 0, 0.0, 0.0, 0.0

    def add(self, c: M.PerturbationCurves) -> None:
        k = len(c.morf)
        self.n += k
        self.fraction = self.fraction + c.fraction * k
        self.morf = self.morf + c.morf.sum(axis=0)
        self.lerf = self.lerf + c.lerf.sum(axis=0)

    def result(self) -> dict | None:
        if not self.n:
            return None
        return {"fraction": self.fraction / self.n, "morf": self.morf / self.n, "lerf": self.lerf / self.n}
