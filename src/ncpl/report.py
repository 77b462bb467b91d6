"""The evaluation report as files: markdown tables, the full JSON, parity and loss-curve plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ncpl.atomic import atomic_path
from ncpl.curve_metrics import PLOT_PREFIX
from ncpl.evaluate import MIN_GROUP, STEPLAW_PICKER

# Column headers of the tables, by the key of the report row they show (a dotted key reads a nested dict); a key
# not named here is its own header.
HEADERS = {
    "ok.mae": "MAE",
    "ok.rmse": "RMSE",
    "ok.spearman": "Spearman",
    "all.n": "n (all)",
    "all.mae": "MAE (all)",
    "all.spearman": "Spearman (all)",
    "coverage_80": "coverage",
    "median_width": "median width",
    "n_failed": "failed",
    "auc_diverge": "divergence ROC-AUC",
    "regret": "mean regret",
    "median_regret": "median regret",
    "diverged_picks": "diverged picks",
    "tries": "runs to near-best (random)",
    "mae": "MAE",
    "end_mae": "end MAE",
}
DIGITS = {"spearman": 3, "coverage_80": 2, "auc_diverge": 3, "diverged_picks": 2}  # by the key's last part; else 4


def _fmt(value: float, digits: int = 4) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _cell(row: dict[str, Any], key: str) -> str:
    """The text of a report row's value at `key`: a number to its `DIGITS`, a count or a name as it is."""
    value = row
    for part in key.split("."):
        value = value[part]
    if value is None or isinstance(value, float):
        return _fmt(value, DIGITS.get(part, 4))
    return str(value)


def _table(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> list[str]:
    """A markdown table of report rows, a column per key."""
    header = [HEADERS.get(key, key.rpartition(".")[2]) for key in keys]
    return _lines(header, [[_cell(row, key) for key in keys] for row in rows])


def markdown_table(rows: list[dict[str, Any]], columns: list[str] | None = None, fmt: Any = str) -> str:
    """A markdown table of flat rows, a column per key (default: the first row's), each cell `fmt(value)`."""
    columns = columns or list(rows[0])
    return "\n".join(_lines(columns, [[fmt(row[column]) for column in columns] for row in rows]))


def _lines(header: list[str], cells: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in cells)]


def markdown(report: dict[str, Any]) -> str:
    converged = ("ok.n", "ok.mae", "ok.rmse", "ok.spearman")
    lines = _table(report["accuracy"], ("test", "source", "predictor", *converged, "all.n", "all.mae", "all.spearman"))
    if report.get("interval"):
        lines += [
            "",
            "10-90% interval on the converged runs (nominal coverage 0.80) and the divergence probability "
            "against the failed (diverged or unstable) runs:",
            "",
        ]
        lines += _table(
            report["interval"],
            ("test", "source", "predictor", "n", "coverage_80", "median_width", "n_failed", "auc_diverge"),
        )
    if report["regret"]:
        lines += [
            "",
            f"Hyperparameter-selection regret (groups of >= {MIN_GROUP} runs sharing source, N, D and optimizer; "
            f"{STEPLAW_PICKER} is the StepLaw law, fitted on every StepLaw shape including a test one):",
            "",
        ]
        rows = [
            {**r, "tries": f"{_fmt(r['runs_to_near_best'], 1)} ({_fmt(r['random_runs_to_near_best'], 1)})"}
            for r in report["regret"]
        ]
        lines += _table(
            rows, ("test", "source", "picker", "groups", "regret", "median_regret", "diverged_picks", "tries")
        )
    if report.get("curves"):
        lines += [
            "",
            "Loss curves: MAE of the absolute loss on the checkpoints after the prefix (prefix laws are fitted "
            "to it; the others see only the config), and at the last checkpoint:",
            "",
        ]
        rows = [{**r, "prefix": f"{r['prefix']:.0%}"} for r in report["curves"]]
        lines += _table(rows, ("test", "source", "prefix", "method", "runs", "points", "mae", "end_mae"))
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], directory: str | Path) -> list[Path]:
    from ncpl import plots  # matplotlib only when writing

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / "report.md", directory / "report.json"]
    for path, text in zip(written, (markdown(report), json.dumps(report, indent=1, allow_nan=True))):
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    for test_name, predictions in report["predictions"].items():
        for predictor in predictions:
            if predictor in ("run_id", "source", "final_loss", "usable"):
                continue
            path = directory / f"parity_{predictor}_{test_name}.png"
            written.append(plots.parity(predictions, predictor, f"{predictor} on {test_name}", path))
    for test_name, curves in report.get("curve_plots", {}).items():
        written.append(
            plots.loss_curves(
                curves,
                f"{test_name}: predicted and true loss curves ({PLOT_PREFIX:.0%} prefix for the prefix laws)",
                directory / f"curves_{test_name}.png",
            )
        )
    return written
