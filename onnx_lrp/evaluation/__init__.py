"""Evaluate explanations: methods × metrics over a dataset, a :class:`Report` and gates on it.

``settings`` (what is measured, method specs, gates), ``dataset`` (samples and masks), ``metrics``
(the measures, usable on their own), ``accumulate`` (running means), ``run`` (the loop:
:func:`evaluate`), ``report`` (table, JSON, JUnit XML) and ``plotting`` (PNG curves). The command
line is :mod:`onnx_lrp.commands.evaluate`.
"""
from .dataset import MASK_SUFFIXES, Item, MaskFinder, iter_items, load_mask
from .report import GateResult, Report
from .run import evaluate
from .settings import (DEFAULT_METHODS, DEFAULT_METRICS, LOCALISATION, LOWER_IS_BETTER, METRIC_GROUPS,
                       RANDOM_DEPENDENT, Gate, MethodSpec, Settings)

__all__ = ["DEFAULT_METHODS", "DEFAULT_METRICS", "LOCALISATION", "LOWER_IS_BETTER", "MASK_SUFFIXES", "METRIC_GROUPS",
           "RANDOM_DEPENDENT", "Gate", "GateResult", "Item", "MaskFinder", "MethodSpec", "Report", "Settings",
           "evaluate", "iter_items", "load_mask"]
