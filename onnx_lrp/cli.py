"""Command line entry point (placeholder until the CLI lands)."""
import sys


def main(argv=None) -> int:
    print("usage: onnx-lrp MODEL INPUT [options]", file=sys.stderr)
    return 2
