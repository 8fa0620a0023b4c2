"""Published numbers from the papers, one tidy CSV per table (described in README.md here)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

PUBLISHED_DIR = Path(__file__).resolve().parent
COLUMNS = ("table", "dataset", "backbone", "representation", "method", "category", "metric", "value")


def published_tables() -> list[str]:
    """Names of the transcribed tables, e.g. ``"reb_table2"`` or ``"patchcore_table_s1"``."""
    return sorted(path.stem for path in PUBLISHED_DIR.glob("*.csv"))


def load_published(table: str | None = None) -> pd.DataFrame:
    """Load one published table, or all of them when ``table`` is None.

    Text columns hold ``""`` where the paper gives nothing. ``value`` is the number as printed
    (a percentage) or NaN for a cell the paper leaves empty; ``decimals`` is how many digits
    the paper printed after the decimal point (<NA> for empty cells), which bounds its rounding.

    Example:
        >>> from benchmarks.published import load_published
        >>> table = load_published("reb_table2")
        >>> rows = table.query("backbone == 'resnet18' and method == 'REB (variable K)'")
        >>> rows.query("category == 'mean'")[["metric", "value"]].to_numpy().tolist()
        [['pixel_auroc', 98.0], ['image_auroc', 99.5]]
    """
    names = published_tables()
    if table is None:
        return pd.concat([load_published(name) for name in names], ignore_index=True)
    if table not in names:
        msg = f"table must be one of {names}, got {table!r}"
        raise ValueError(msg)
    frame = pd.read_csv(PUBLISHED_DIR / f"{table}.csv", dtype=str, keep_default_na=False)
    if tuple(frame.columns) != COLUMNS:
        msg = f"{table}.csv has columns {list(frame.columns)}, expected {list(COLUMNS)}"
        raise ValueError(msg)
    decimals = [len(text.partition(".")[2]) if text else None for text in frame["value"]]
    frame["decimals"] = pd.array(decimals, dtype="Int64")
    frame["value"] = pd.to_numeric(frame["value"].replace("", None), errors="raise").astype(float)
    return frame
