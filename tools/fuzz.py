"""Deep fuzzing: the checks of ``tests/test_fuzz.py`` over many more seeded cases.

Random valid models (every composite below; LRP-0 conservation for the bias-free ones, CP-LRP
conservation for bias-free attention, output equality with onnxruntime for all, the gradient
against finite differences) and mutated model bytes. Every case runs in a child process, so a
native crash or a hang is counted, not fatal. Prints a table of cases tried × failures per
category, the refusals by reason, then each failure with the seed that reproduces it
(``fuzz_cases.random_model(fuzz_cases.NumpyChooser(seed), conserving)``, or
``tools/fuzz.py --case SEED [--biases]``).

    PYTHONPATH=$PWD .venv/bin/python tools/fuzz.py                       # 400 models, 200 mutants
    PYTHONPATH=$PWD .venv/bin/python tools/fuzz.py --models 2000 --mutants 1000 --seed 7
    PYTHONPATH=$PWD .venv/bin/python tools/fuzz.py --models 300 --mutants 0 --kind tokens
"""
from __future__ import annotations

import argparse
import collections
import re
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

import fuzz_cases as fuzz  # noqa: E402

COMPOSITES = ("lrp0", "epsilon_plus_flat", "epsilon_alpha2_beta1_flat", "epsilon_gamma_box")


#: one (seed, conserving) per refusal reason, to reproduce it with --case
examples: dict = {}


def fuzz_models(count: int, seed: int, tally, failures, refusals, composites, kind=None) -> None:
    cases = fuzz.model_cases(count, seed, composites, kind)
    for case, outcome in zip(cases, fuzz.run_in_subprocess(cases, per_case=300)):
        drawn_kind = outcome.info.get("kind", kind or "?")
        category = f"{drawn_kind}, " + ("bias-free (conserves)" if case["conserving"] else "with biases")
        _count(tally[category], outcome)
        if outcome.kind.startswith("refused"):
            refusals[(drawn_kind, _reason(outcome.detail))] += 1
            examples.setdefault((drawn_kind, _reason(outcome.detail)), (case["seed"], case["conserving"]))
        if not outcome.ok:
            failures.append((category, f"seed={case['seed']} conserving={case['conserving']}", outcome,
                             outcome.info.get("ops")))


def _reason(detail: str) -> str:
    """A refusal's message without node names and numbers, so that alike ones count together."""
    text = re.sub(r"(?<!op type )'[^']*'", "'…'", detail.split(": ", 1)[-1])
    return re.sub(r"\d+", "N", text)[:160]


def fuzz_mutants(count: int, seed: int, tally, failures) -> None:
    cases = fuzz.mutant_cases(count, seed)
    for case, outcome in zip(cases, fuzz.run_in_subprocess(cases, per_case=120)):
        category = f"mutated bytes: {case['kind']}"
        _count(tally[category], outcome)
        if not outcome.ok:
            failures.append((category, f"seed={seed}", outcome, None))


def _count(row: collections.Counter, outcome) -> None:
    row["cases"] += 1
    row["failures"] += not outcome.ok
    row["refused"] += outcome.kind.startswith("refused")
    row["skipped"] += outcome.kind.startswith("skipped")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=400)
    parser.add_argument("--mutants", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kind", choices=fuzz.KINDS, help="draw only models of this kind")
    parser.add_argument("--composites", default=",".join(COMPOSITES),
                        help="comma-separated: lrp0, cp_lrp or preset names (default %(default)s)")
    parser.add_argument("--case", type=int, help="check the model of this case seed only and print it")
    parser.add_argument("--biases", action="store_true", help="with --case: the model with biases")
    args = parser.parse_args()
    composites = tuple(args.composites.split(","))
    if args.case is not None:
        drawn = fuzz.random_model(fuzz.NumpyChooser(args.case), not args.biases, args.kind)
        print(drawn.kind, drawn.ops, drawn.conserves)
        print(fuzz.check_model(drawn, composites))
        return 0
    tally = collections.defaultdict(collections.Counter)
    failures, refusals = [], collections.Counter()
    start = time.perf_counter()
    fuzz_models(args.models, args.seed, tally, failures, refusals, composites, args.kind)
    fuzz_mutants(args.mutants, args.seed, tally, failures)
    print(f"{time.perf_counter() - start:.0f} s\n")
    print("| category | cases | failures | refused (OnnxLrpError) | skipped (onnxruntime cannot run it) |")
    print("|---|---:|---:|---:|---:|")
    for category, row in sorted(tally.items()):
        print(f"| {category} | {row['cases']} | {row['failures']} | {row['refused']} | {row['skipped']} |")
    if refusals:
        print("\n| kind | refusal | cases | e.g. |\n|---|---|---:|---|")
        for (kind, reason), n in refusals.most_common():
            seed, conserving = examples[(kind, reason)]
            print(f"| {kind} | {reason} | {n} | --case {seed}{'' if conserving else ' --biases'} |")
    for category, where, outcome, ops in failures:
        print(f"\nFAIL {category} [{where}] {outcome.kind}: {outcome.detail[:500]}" + (f"\n  ops: {ops}" if ops else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
