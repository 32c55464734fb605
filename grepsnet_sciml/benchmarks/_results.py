"""Reading results files back (private; shared by the benchmark drivers' ``merge``)."""

from __future__ import annotations

import json
from pathlib import Path


def read_results(path) -> dict:
    """A results JSON file as a dict, or a ValueError naming the file and the problem."""
    try:
        part = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"paths: cannot read {path} as a results JSON ({err})") from None
    if not isinstance(part, dict):
        raise ValueError(f"paths: {path} holds {type(part).__name__}; expected a results object")
    return part


def variant(row: dict) -> tuple:
    """``(model, width, n_layers, modes)`` of a results row: the rows a mean over seeds joins
    (None where a row does not record it)."""
    return row["model"], row["width"], row.get("n_layers"), row.get("modes")


def variant_label(row: dict) -> str:
    """``w<width>`` and `` L<n_layers>``, `` m<modes>`` where recorded, e.g. ``w5 L4 m10``."""
    label = f"w{row['width']}"
    for key, letter in (("n_layers", "L"), ("modes", "m")):
        if row.get(key) is not None:
            label += f" {letter}{row[key]}"
    return label


def claim(seen: set, row: dict) -> None:
    """Add the row's variant and seed to ``seen``; ValueError if another file had them."""
    key = (*variant(row), row["seed"])
    if key in seen:
        raise ValueError(f"paths: model {row['model']!r} width {row['width']} layers "
                         f"{row.get('n_layers')} modes {row.get('modes')} seed {row['seed']} "
                         "appears in more than one file")
    seen.add(key)
