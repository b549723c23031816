"""Deep fuzzing: the checks of ``tests/test_fuzz.py`` over many more seeded cases.

Random valid models (every composite below; LRP-0 conservation for the bias-free ones, output
equality with onnxruntime for all) and mutated model bytes (checked in a child process, so a
native crash is counted, not fatal). Prints a table of cases tried × failures per category, then
each failure with the seed that reproduces it
(``fuzz_cases.random_model(fuzz_cases.NumpyChooser(seed), conserving)``).

    PYTHONPATH=$PWD .venv/bin/python tools/fuzz.py                       # 400 models, 200 mutants
    PYTHONPATH=$PWD .venv/bin/python tools/fuzz.py --models 2000 --mutants 1000 --seed 7
"""
from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

import fuzz_cases as fuzz  # noqa: E402

COMPOSITES = ("lrp0", "epsilon_plus_flat", "epsilon_alpha2_beta1_flat", "epsilon_gamma_box")


def fuzz_models(count: int, seed: int, tally, failures) -> None:
    for i in range(count):
        case_seed, conserving = seed * 1_000_003 + i, i % 2 == 0
        drawn = fuzz.random_model(fuzz.NumpyChooser(case_seed), conserving)
        category = "valid model, bias-free (LRP-0 conserves)" if conserving else "valid model, with biases"
        outcome = fuzz.check_model(drawn, COMPOSITES)
        _count(tally[category], outcome)
        if not outcome.ok:
            failures.append((category, f"seed={case_seed} conserving={conserving}", outcome, drawn.ops))


def fuzz_mutants(count: int, seed: int, tally, failures) -> None:
    cases = fuzz.mutant_cases(count, seed)
    for case, outcome in zip(cases, fuzz.run_in_subprocess(cases, timeout=3600)):
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
    args = parser.parse_args()
    tally = collections.defaultdict(collections.Counter)
    failures = []
    start = time.perf_counter()
    fuzz_models(args.models, args.seed, tally, failures)
    fuzz_mutants(args.mutants, args.seed, tally, failures)
    print(f"{time.perf_counter() - start:.0f} s\n")
    print("| category | cases | failures | refused (OnnxLrpError) | skipped (onnxruntime cannot run it) |")
    print("|---|---:|---:|---:|---:|")
    for category, row in tally.items():
        print(f"| {category} | {row['cases']} | {row['failures']} | {row['refused']} | {row['skipped']} |")
    for category, where, outcome, ops in failures:
        print(f"\nFAIL {category} [{where}] {outcome.kind}: {outcome.detail[:500]}" + (f"\n  ops: {ops}" if ops else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
