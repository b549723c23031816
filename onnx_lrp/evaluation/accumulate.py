"""Running sums, so that memory stays bounded however many samples stream through."""
from __future__ import annotations

import math

import numpy as np

from . import metrics as M

class RunningMean:
    """Mean and standard deviation (over the samples) of a stream of values, NaNs skipped; with
    ``seed_std`` per value, also the standard deviation over seeds of the mean, from independent
    per-value estimates: sqrt(Σ s_i²) / n."""

    def __init__(self, seed_std_from: str | None = None):
        self.n, self.total, self.sq, self.seed_var = 0, 0.0, 0.0, 0.0
        self.seed_std_from = seed_std_from

    def add(self, values, seed_std=None) -> None:
        v = np.asarray(values, np.float64).reshape(-1)
        keep = np.isfinite(v)
        self.n += int(keep.sum())
        self.total += float(v[keep].sum())
        self.sq += float((v[keep] ** 2).sum())
        if seed_std is not None:
            s = np.asarray(seed_std, np.float64).reshape(-1)[keep]
            self.seed_var += float(np.nansum(s * s))

    def result(self) -> dict:
        if not self.n:
            return {"mean": float("nan"), "std": float("nan"), "n": 0}
        mean = self.total / self.n
        out = {"mean": mean, "std": math.sqrt(max(self.sq / self.n - mean * mean, 0.0)), "n": self.n}
        if self.seed_std_from:
            out.update(seed_std=math.sqrt(self.seed_var) / self.n, seed_std_from=self.seed_std_from)
        return out


class OverSeeds(RunningMean):
    """A :class:`RunningMean` of values measured once per seed: ``seed_std`` is the standard
    deviation over the seeds of each seed's mean (NaN with one seed)."""

    def __init__(self):
        super().__init__("seeds")
        self.per_seed: list[float] = []

    def add_seed(self, values) -> None:
        v = np.asarray(values, np.float64)
        self.add(v)
        v = v[np.isfinite(v)]
        self.per_seed.append(float(v.mean()) if v.size else float("nan"))

    def result(self) -> dict:
        out = super().result()
        if self.n:
            means = np.array([m for m in self.per_seed if math.isfinite(m)])
            out.update(seed_std=float(means.std(ddof=1)) if len(means) > 1 else float("nan"),
                       seed_std_from=f"{len(self.per_seed)} seeds")
        return out


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
