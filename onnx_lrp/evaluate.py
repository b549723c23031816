"""Evaluate explanations in a validation pipeline: methods × metrics over a dataset, a report
(table, JSON, JUnit XML, PNG curves) and a gate that fails the run when a metric is too low.

Python::

    from onnx_lrp.evaluate import evaluate, Gate
    report = evaluate("models/efficientnet_lite0.onnx", ["models/samples/"], masks="masks/",
                      methods=["lrp", "gradient", "occlusion", "random"])
    print(report.table())
    failed = report.check([Gate.parse("lrp:relevance_mass_accuracy=0.5")])

Command line (``python -m onnx_lrp.evaluate`` or ``onnx-lrp evaluate``)::

    onnx-lrp evaluate MODEL INPUTS... [--masks DIR] [--methods ...] [--metrics ...]
                      [--json PATH] [--junit PATH] [--plots DIR] [--fail-under METRIC=VALUE ...]

The work is in :mod:`onnx_lrp.evaluation`; this module is the command line and re-exports its API.
Inputs stream through one batch at a time (bounded memory: one batch of samples and relevance,
plus running sums of the metrics); a progress bar is drawn on a terminal.
"""
from __future__ import annotations

import sys

from .attribution import METHODS
from .errors import OnnxLrpError
from .evaluation import (DEFAULT_METHODS, DEFAULT_METRICS, LOCALISATION, LOWER_IS_BETTER, MASK_SUFFIXES,
                         METRIC_GROUPS, Gate, GateResult, Item, MaskFinder, MethodSpec, Report, Settings, evaluate,
                         iter_items, load_mask)
from .evaluation.settings import parse_literal

__all__ = ["DEFAULT_METHODS", "DEFAULT_METRICS", "LOCALISATION", "LOWER_IS_BETTER", "MASK_SUFFIXES", "METRIC_GROUPS",
           "Gate", "GateResult", "Item", "MaskFinder", "MethodSpec", "Report", "Settings", "evaluate", "iter_items",
           "load_mask", "HELP", "add_arguments", "run", "main"]


HELP = "measure how faithful explanations are (region perturbation, pointing game, ...) and gate on it"
USAGE = "onnx-lrp evaluate MODEL INPUTS... [--masks DIR] [--methods ...] [--metrics ...] [options]"
EXAMPLES = """examples:
  onnx-lrp evaluate models/efficientnet_lite0.onnx models/samples/cat_efficientnet_lite0.npy \\
      --masks models/samples --json report.json --junit report.xml --plots plots/
  onnx-lrp evaluate model.onnx data/ --methods lrp gradient occlusion:window=8,stride=4 random \\
      --metrics region_perturbation relevance_mass_accuracy --masks masks/ \\
      --fail-under lrp:relevance_mass_accuracy=0.6 --fail-under lrp:morf_lerf_area=0.5

methods: """ + ", ".join(METHODS) + """ (options as name:key=value,key=value)
metrics: """ + ", ".join(METRIC_GROUPS) + """
exit codes: 0 all gates pass, 1 a gate failed or an error, 2 usage error"""


def add_arguments(parser) -> None:
    parser.add_argument("model", metavar="MODEL", help="the ONNX model")
    parser.add_argument("inputs", metavar="INPUTS", nargs="+",
                        help=".npy/.npz/image files or directories of them (preprocessed as the model's metadata says)")
    parser.add_argument("--masks", metavar="DIR",
                        help="ground-truth masks (white = object): for sample cat_model_3, cat_model_3_mask, "
                             "cat_model_mask or cat_mask (.png, .npy, ...), or a file named cat_model_3")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), metavar="METHOD",
                        help=f"default: {' '.join(DEFAULT_METHODS)}")
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS), metavar="METRIC",
                        help=f"default: {' '.join(DEFAULT_METRICS)}")
    parser.add_argument("--composite", default="epsilon_plus_flat", help="LRP composite (default epsilon_plus_flat)")
    parser.add_argument("--target", type=int, default=None, help="class to explain (default: the predicted one)")
    parser.add_argument("--patch", type=int, default=None, help="patch size (default: min(H, W) // 14)")
    parser.add_argument("--steps", type=int, default=Settings.steps, help="perturbation steps (default 16)")
    parser.add_argument("--fraction", type=float, default=Settings.fraction,
                        help="share of patches removed by the last step (default 1.0)")
    parser.add_argument("--baseline", default="mean", type=parse_literal,
                        help="value of removed features: a number or 'mean' (default)")
    parser.add_argument("--faithfulness-runs", type=int, default=Settings.faithfulness_runs, metavar="N",
                        help="random patch subsets per sample (default 32)")
    parser.add_argument("--faithfulness-subset", type=float, default=Settings.faithfulness_subset, metavar="F",
                        help="share of the patches in each subset (default 0.1)")
    parser.add_argument("--randomisation-layers", type=int, default=Settings.randomisation_layers, metavar="N",
                        help="checkpoints along the cascade, the last with every layer random (default 4)")
    parser.add_argument("--randomisation-samples", type=int, default=Settings.randomisation_samples, metavar="N",
                        help="samples (the first ones) the randomisation check explains (default 4)")
    parser.add_argument("--pointing-tolerance", type=float, default=0.0, metavar="PX",
                        help="pointing game: a hit within this distance of the mask counts (default 0)")
    parser.add_argument("--batch-size", type=int, default=Settings.batch_size, help="samples per batch (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--providers", nargs="+", default=None, help="onnxruntime execution providers")
    parser.add_argument("--json", metavar="PATH", help="write the report as JSON")
    parser.add_argument("--junit", metavar="PATH", help="write a JUnit XML report (one case per method × metric)")
    parser.add_argument("--plots", metavar="DIR", help="write PNG perturbation curves")
    parser.add_argument("--fail-under", action="append", default=[], metavar="[METHOD:]METRIC=VALUE",
                        help="exit 1 when the metric is below VALUE (every method unless one is named)")
    parser.add_argument("--fail-over", action="append", default=[], metavar="[METHOD:]METRIC=VALUE",
                        help="exit 1 when the metric is above VALUE (for aopc_lerf, randomisation_spearman)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    # gates are parsed before the (slow) evaluation so that a typo fails at once
    gates = _gates(args)
    report = evaluate(args.model, args.inputs, masks=args.masks, methods=args.methods, metrics=args.metrics,
                      target=args.target, composite=args.composite, settings=_settings(args),
                      providers=args.providers, progress=False if args.quiet else None)
    report.check(gates)
    print(report.table())
    for note in report.notes:
        print(f"note: {note}")
    _write_reports(report, args)
    return 0 if report.passed else 1


def _gates(args) -> list[Gate]:
    return [Gate.parse(g, "under") for g in args.fail_under] + [Gate.parse(g, "over") for g in args.fail_over]


def _settings(args) -> Settings:
    return Settings(patch=args.patch, steps=args.steps, fraction=args.fraction, baseline=args.baseline,
                    faithfulness_runs=args.faithfulness_runs, faithfulness_subset=args.faithfulness_subset,
                    randomisation_layers=args.randomisation_layers, randomisation_samples=args.randomisation_samples,
                    pointing_tolerance=args.pointing_tolerance, batch_size=args.batch_size, seed=args.seed)


def _write_reports(report: Report, args) -> None:
    if args.json:
        report.write_json(args.json)
    if args.junit:
        report.write_junit(args.junit)
    if args.plots:
        report.write_plots(args.plots)


def main(argv=None) -> int:
    """``python -m onnx_lrp.evaluate ...``: exit 0 / 1 (gate failed or error) / 2 (usage)."""
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message):
            print(f"onnx-lrp evaluate: error: {message} (see --help)", file=sys.stderr)
            raise SystemExit(2)

    parser = _Parser(prog="onnx-lrp evaluate", usage=USAGE, description=HELP, epilog=EXAMPLES,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    try:
        args = parser.parse_args(argv)
        return run(args)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    except OnnxLrpError as exc:
        print(f"onnx-lrp evaluate: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
