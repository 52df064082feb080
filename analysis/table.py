"""A study's comparison table: one row per arm, mean +- std over seeds, and the runs that are missing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

# (metric key logged by every job, column title, higher is better)
METRICS: tuple[tuple[str, str, bool], ...] = (
    ("test/mAP", "mAP", True),
    ("test/NDS", "NDS", True),
    ("test/fp_per_frame_0.3", "FP/frame@0.3", False),
    ("test/hc_fp_per_frame", "HC-FP/frame", False),
    ("test/unmatched_score_mean", "unmatched score", False),
    ("test/id_switches", "IDSW", False),
    ("test/IDF1", "IDF1", True),
    ("test/AMOTA", "AMOTA", True),
    ("test/HOTA", "HOTA", True),
    ("test/gini", "Gini", False),
    ("train_time_s", "train s", False),
)


@dataclass
class RunRecord:
    """What the table needs of one job's MLflow run."""

    arm: str
    seed: int
    status: str
    metrics: dict[str, float]
    error: str = ""


def runs_frame(records: Sequence[RunRecord]) -> pd.DataFrame:
    """Finished runs as a long frame: one row per run, one column per metric."""
    rows = [{"arm": r.arm, "seed": r.seed, **r.metrics} for r in records if r.status == "FINISHED"]
    return pd.DataFrame(rows, columns=["arm", "seed", *[m for m, _, _ in METRICS]])


def summary_table(records: Sequence[RunRecord], arms: Sequence[str], baseline: str | None) -> pd.DataFrame:
    """Mean, std and n per arm and metric; the baseline first, then the arms in study order."""
    frame = runs_frame(records)
    order = ([baseline] if baseline in arms else []) + [a for a in arms if a != baseline]
    rows = []
    for arm in order:
        runs = frame[frame["arm"] == arm]
        row = {"arm": arm, "n": len(runs)}
        for key, _, _ in METRICS:
            values = runs[key].dropna() if key in runs else pd.Series(dtype=float)
            row[f"{key}:mean"] = values.mean() if len(values) else float("nan")
            row[f"{key}:std"] = values.std(ddof=1) if len(values) > 1 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def missing_runs(records: Sequence[RunRecord], arms: Sequence[str], seeds: Sequence[int]) -> list[str]:
    """Every (arm, seed) of the study without a FINISHED run, with the status and error of the run if any."""
    finished = {(r.arm, r.seed) for r in records if r.status == "FINISHED"}
    latest = {(r.arm, r.seed): r for r in records}
    lines = []
    for arm in arms:
        for seed in seeds:
            if (arm, seed) in finished:
                continue
            run = latest.get((arm, seed))
            lines.append(f"{arm} seed {seed}: " + (f"{run.status} {run.error}".strip() if run else "no run"))
    return lines


def to_markdown(table: pd.DataFrame) -> str:
    """``mean ± std`` cells (std omitted for a single seed) in a Markdown table."""
    header = ["arm", "n", *[title for _, title, _ in METRICS]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in table.iterrows():
        cells = [str(row["arm"]), str(row["n"])]
        for key, _, _ in METRICS:
            mean, std = row[f"{key}:mean"], row[f"{key}:std"]
            cells.append("-" if pd.isna(mean) else f"{mean:.3f}" + ("" if pd.isna(std) else f" ± {std:.3f}"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
