"""``--resume``: which inputs of an earlier run into the same ``--out`` are complete.

Every output file is written atomically (:func:`onnx_lrp.files.write_atomic`: a temporary name
beside it, then a rename), so a file under its final name is complete, and an interrupted write
leaves at most a hidden ``.NAME.*.tmp`` file, which never counts. The summary ``NAME.json`` is
written last: an input is complete when its summary names this input and every file the summary
lists exists.
"""
from __future__ import annotations

import json
from pathlib import Path

from .inputs import Sample


def complete_summary(out: Path, sample: Sample, keep_layers: bool = False) -> dict | None:
    """The summary of ``sample`` (already given its unique name) when an earlier run wrote all its
    files into ``out``, with the file paths as they are now; None when anything is missing."""
    try:
        summary = json.loads((out / f"{sample.name}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or not _same_input(summary, sample):
        return None
    listed = summary.get("files")
    if not isinstance(listed, dict) or "relevance" not in listed or (keep_layers and "layers" not in listed):
        return None
    files = {kind: out / Path(str(path)).name for kind, path in listed.items()}
    if not all(path.is_file() for path in files.values()):
        return None
    summary["files"] = {kind: str(path) for kind, path in files.items()}
    return summary


def _same_input(summary: dict, sample: Sample) -> bool:
    """The summary was written for this file (by name; the folder may be given another way) and position."""
    return Path(str(summary.get("input", ""))).name == Path(sample.source).name and summary.get("index") == sample.index
