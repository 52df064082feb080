"""A comparison's tables: one row per arm (mean +- std over seeds), a row of paired differences to the baseline
under every other arm, the best mean per column in bold, and the runs that are missing, in Markdown, LaTeX and CSV.

The tidy frame of ``comparison_table`` (one row per arm and metric) is the single source of every format.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from rich.table import Table
from rich.text import Text

from .render import Cell, Fmt, latex_escape, latex_table, markdown_table, rich_table
from .runs import RunRecord
from .stats import METHOD, paired_difference, summarize


@dataclass(frozen=True)
class MetricSpec:
    """A column: the metric key every job logs, its title, its direction and its number format."""

    key: str
    title: str
    higher_is_better: bool
    fmt: str


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("test/mAP", "mAP", True, ".3f"),
    MetricSpec("test/NDS", "NDS", True, ".3f"),
    MetricSpec("test/fp_per_frame_0.3", "FP/frame@0.3", False, ".2f"),
    MetricSpec("test/hc_fp_per_frame", "HC-FP/frame", False, ".2f"),
    MetricSpec("test/hc_fp_cls_per_frame", "HC-FP(cls)/frame", False, ".2f"),
    MetricSpec("test/hc_unmatched_per_frame", "HC-unmatched/frame", False, ".1f"),
    MetricSpec("test/unmatched_score_mean", "unmatched score", False, ".3f"),
    MetricSpec("test/unmatched_score_worst", "worst-class unmatched", False, ".3f"),
    MetricSpec("test/id_switches", "IDSW", False, ".1f"),
    MetricSpec("test/ids_best_mota", "IDS@best-MOTA", False, ".1f"),
    MetricSpec("test/IDF1", "IDF1", True, ".3f"),
    MetricSpec("test/AMOTA", "AMOTA", True, ".3f"),
    MetricSpec("test/HOTA", "HOTA", True, ".3f"),
    MetricSpec("test/gini", "Gini", False, ".3f"),
    MetricSpec("train_time_s", "train s", False, ".0f"),
)
SPEC = {m.key: m for m in METRICS}
_FIXED_NOTE = (
    "Cells: mean ± sample std over seeds; n = finished runs (a cell's own n in brackets when a metric is missing "
    f"from some). Δ: mean paired difference (arm - baseline) [95 % CI], p: {METHOD}; identical arms give p = 1. "
    "Bold: best mean per column (↑ higher / ↓ lower is better; none when all tie; never a cell with its own n). "
    "FP/frame@0.3: false positives with output score ≥ 0.3 (class score x centerness). HC-FP: false positives "
    "with output score ≥ 0.5. HC-FP(cls): false positives with class score ≥ 0.5 (what a decoder's TopK and score "
    "threshold see). HC-unmatched: queries without a GT with class score ≥ 0.5, among every query, not only the "
    "TopK survivors; unmatched score: the mean class score of those queries. Worst-class unmatched: the largest "
    "over classes of one class column's mean score on the unmatched queries (a loss that drops one class's "
    "negative signal inflates that column alone; the class is named below)."
)
WORST_CLASS = "test/unmatched_score/"  # the per-class columns whose largest mean is the worst class


def _logged(runs: Sequence[RunRecord], key: str) -> str:
    """A param's value over runs, named (``0.05 (key)``, ``a / b (key)`` when runs differ), or its bare key when
    no run logged it."""
    values = " / ".join(sorted({r.params[key] for r in runs if key in r.params}))
    return f"{values} ({key})" if values else key


def _track_rule(params: dict[str, str]) -> tuple[str, str]:
    """(eval.track_score, eval.track_min_score) of a run; a run without eval.track_score predates it and tracked
    on the output score."""
    return params.get("eval.track_score", "output"), params.get("eval.track_min_score", "eval.track_min_score")


def _rule_text(rule: tuple[str, str], arms: Sequence[str] = ()) -> str:
    score, threshold = rule
    where = f": {', '.join(arms)}" if arms else ""
    return f"{score} score ≥ {threshold} (eval.track_score={score}{where})"


def table_note(records: Sequence[RunRecord]) -> str:
    """The note under a table: how cells are computed, and the score each detection and tracking column is
    counted on, read from the params of the runs in the means (of every run when none finished)."""
    runs = [r for seeds in usable_runs(records)[0].values() for r in seeds.values()] or list(records)
    rules: dict[tuple[str, str], list[str]] = {}  # tracking rule -> its arms
    for r in runs:
        arms = rules.setdefault(_track_rule(r.params), [])
        if r.arm not in arms:
            arms.append(r.arm)
    rules = rules or {_track_rule({}): []}
    if len(rules) == 1:
        tracks = " and " + _rule_text(next(iter(rules)))
    else:
        tracks = " and, as the runs differ, " + " or ".join(_rule_text(*rule) for rule in sorted(rules.items()))
    over = {"class": "the same tracks", "output": "every detection with an instance id"}
    scores = sorted({score for score, _ in rules})
    swept = over[scores[0]] if len(scores) == 1 else f"{over['class']} (class) or {over['output']} (output)"
    top_k, threshold = _logged(runs, "model.num_output"), _logged(runs, "model.score_threshold")
    return (
        f"{_FIXED_NOTE} Detections: the decoder's TopK by class score, K = {top_k}, with class score ≥ {threshold}. "
        f"IDSW, IDF1, HOTA: tracks = detections with an instance id{tracks}. AMOTA, IDS@best-MOTA: the nuScenes "
        f"devkit's over {swept}, sweeping the output score; IDS@best-MOTA at each class's best-MOTA threshold."
        + worst_classes(runs)
    )


def worst_classes(runs: Sequence[RunRecord]) -> str:
    """Each arm's worst class: the class column with the largest unmatched-query mean score, averaged over the
    arm's seeds (runs that predate the per-class metrics have none, and the sentence is left out)."""
    per_arm: dict[str, dict[str, list[float]]] = {}
    for r in runs:
        for key, value in r.metrics.items():
            if key.startswith(WORST_CLASS) and not math.isnan(value):
                per_arm.setdefault(r.arm, {}).setdefault(key.removeprefix(WORST_CLASS), []).append(value)
    if not per_arm:
        return ""
    named = []
    for arm, classes in per_arm.items():
        means = {c: float(np.mean(v)) for c, v in classes.items()}
        worst = max(means, key=means.__getitem__)
        named.append(f"{arm} {worst} ({means[worst]:.3f})")
    return " Worst class per arm (seed-mean unmatched score of its column): " + ", ".join(named) + "."


def usable_runs(records: Sequence[RunRecord]) -> tuple[dict[str, dict[int, RunRecord]], list[str]]:
    """The FINISHED run of every (arm, seed) (the latest when there are several), and a note per run left out.

    A seed counts once: two finished runs of one arm and seed (e.g. a study re-run with another override) are not
    two samples, and the one left out is named under the table.
    """
    cells: dict[str, dict[int, RunRecord]] = {}
    notes = []
    for r in sorted((r for r in records if r.status == "FINISHED"), key=lambda r: r.end_time):
        previous = cells.setdefault(r.arm, {}).get(r.seed)
        if previous is not None:
            notes.append(f"{r.arm} seed {r.seed}: run {previous.run_id} superseded by the later run {r.run_id}")
        cells[r.arm][r.seed] = r
    return cells, notes


def comparison_table(records: Sequence[RunRecord], arms: Sequence[str], baseline: str | None) -> pd.DataFrame:
    """One row per (arm, metric): runs, n, mean, std, paired difference to the baseline, CI, p, best."""
    cells, _ = usable_runs(records)
    rows = []
    for arm in arms:
        runs = cells.get(arm, {})
        for spec in METRICS:
            values = {seed: r.metrics.get(spec.key, math.nan) for seed, r in runs.items()}
            summary = summarize(list(values.values()))
            row = {"arm": arm, "metric": spec.key, "title": spec.title, "runs": len(runs), **vars(summary)}
            if baseline is not None and arm != baseline:
                base = {seed: r.metrics.get(spec.key, math.nan) for seed, r in cells.get(baseline, {}).items()}
                diff = paired_difference(values, base)
                row.update(diff=diff.mean, ci_low=diff.ci_low, ci_high=diff.ci_high, p_value=diff.p_value)
                row["n_pairs"] = diff.n
            rows.append(row)
    columns = ["arm", "metric", "title", "runs", "n", "mean", "std", "diff", "ci_low", "ci_high", "p_value", "n_pairs"]
    table = pd.DataFrame(rows, columns=columns)
    table["n_pairs"] = table["n_pairs"].astype("Int64")
    table["best"] = False
    for spec in METRICS:
        sel = table["metric"] == spec.key
        # A cell that lacks some of its runs' values (a metric undefined in some seeds) is never called best.
        means = table.loc[sel, "mean"].where(table.loc[sel, "n"] == table.loc[sel, "runs"])
        if means.notna().any():
            best = np.isclose(means, means.max() if spec.higher_is_better else means.min(), rtol=1e-12, atol=0)
            table.loc[sel, "best"] = best & (best.sum() < means.notna().sum())  # all tied: nothing is best
    return table


def missing_runs(records: Sequence[RunRecord], expected: Sequence[tuple[str, int]]) -> list[str]:
    """Every expected (arm, seed) without a FINISHED run, with the status, error and id of its run if any."""
    finished = {(r.arm, r.seed) for r in records if r.status == "FINISHED"}
    latest = {(r.arm, r.seed): r for r in sorted(records, key=lambda r: r.end_time)}
    lines = []
    for arm, seed in expected:
        if (arm, seed) in finished:
            continue
        run = latest.get((arm, seed))
        what = f"{run.status} {run.error}".strip() + f" (run {run.run_id})" if run else "no run"
        lines.append(f"{arm} seed {seed}: {what}")
    return lines


# ----------------------------------------------------------------------------------------------------------------
# Cells: "md" (Markdown), "tex" (LaTeX) or "rich" (a terminal; bold is a style there)
# ----------------------------------------------------------------------------------------------------------------


def _mean_cell(row: pd.Series, fmt: Fmt) -> Cell:
    """``mean ± std`` (std left out for one seed, ``(n=k)`` when fewer values than runs), bold when best."""
    if row["n"] == 0:
        return "--" if fmt == "tex" else "-"
    spec = SPEC[row["metric"]]
    text = format(row["mean"], spec.fmt)
    if not pd.isna(row["std"]):
        text += (r" \pm " if fmt == "tex" else " ± ") + format(row["std"], spec.fmt)
    count = f" (n={row['n']})" if row["n"] < row["runs"] else ""
    best = bool(row["best"])
    if fmt == "tex":
        return (rf"$\mathbf{{{text}}}$" if best else f"${text}$") + count
    if fmt == "rich":
        return Text(text + count, style="bold" if best else "")
    return (f"**{text}**" if best else text) + count


def _diff_cell(row: pd.Series, fmt: Fmt) -> str:
    """``+d [lo, hi] p=...`` of the paired difference; n/a where it is undefined."""
    if pd.isna(row["diff"]):
        return "n/a"
    spec = "+" + SPEC[row["metric"]].fmt
    diff, p = format(row["diff"], spec), row["p_value"]
    ci = "n/a" if pd.isna(row["ci_low"]) else f"{format(row['ci_low'], spec)}, {format(row['ci_high'], spec)}"
    p_text = "p n/a" if pd.isna(p) else ("p<0.001" if p < 0.001 else f"p={p:.3f}")
    pairs = "" if row["n_pairs"] == row["runs"] else f" (n={row['n_pairs']})"
    if fmt == "tex":  # stacked: difference, then CI and p in small type, to keep the column narrow
        ci, p_text = (ci if ci == "n/a" else f"${ci}$"), ("$p$ n/a" if pd.isna(p) else f"${p_text}$")
        return rf"\begin{{tabular}}[t]{{@{{}}c@{{}}}}${diff}${pairs}\\\tiny [{ci}]\\\tiny {p_text}\end{{tabular}}"
    return f"{diff} [{ci}] {p_text}{pairs}"


def _title(spec: MetricSpec, fmt: Fmt) -> str:
    if fmt == "tex":
        return latex_escape(spec.title) + (r" $\uparrow$" if spec.higher_is_better else r" $\downarrow$")
    return spec.title + (" ↑" if spec.higher_is_better else " ↓")


def _name(arm: str, fmt: Fmt) -> str:
    return latex_escape(arm) if fmt == "tex" else arm


# ----------------------------------------------------------------------------------------------------------------
# The main table
# ----------------------------------------------------------------------------------------------------------------


def _main_rows(table: pd.DataFrame, arms: Sequence[str], baseline: str | None, fmt: Fmt) -> list[list[Cell]]:
    """An arm's row, then (other arms) its row of differences to the baseline."""
    rows = []
    for arm in arms:
        part = table[table["arm"] == arm]  # in METRICS order
        runs = str(int(part["runs"].iloc[0]))
        rows.append([_name(arm, fmt), runs, *[_mean_cell(r, fmt) for _, r in part.iterrows()]])
        if baseline is not None and arm != baseline:
            label = r"\quad $\Delta$" if fmt == "tex" else f"Δ {arm} - {baseline}"
            rows.append([label, runs, *[_diff_cell(r, fmt) for _, r in part.iterrows()]])
    return rows


def to_markdown(table: pd.DataFrame, arms: Sequence[str], baseline: str | None) -> str:
    """The main table in Markdown: header with directions, one row per arm, a Δ row under each other arm."""
    header = ["arm", "n", *[_title(m, "md") for m in METRICS]]
    return markdown_table(header, _main_rows(table, arms, baseline, "md"))


def to_latex(
    table: pd.DataFrame,
    arms: Sequence[str],
    baseline: str | None,
    caption: str,
    label: str,
    notes: Sequence[str],
    records: Sequence[RunRecord],
) -> str:
    """The main table as a booktabs ``table*`` (needs ``\\usepackage{booktabs,graphicx}``); ``records`` give the
    note's scores and thresholds."""
    header = ["Arm", "$n$", *[_title(m, "tex") for m in METRICS]]
    caption = latex_escape(" ".join([f"{caption}.", table_note(records), *[f"Not in the means: {n}." for n in notes]]))
    rows = _main_rows(table, arms, baseline, "tex")
    return latex_table("table*", "lr" + "c" * len(METRICS), header, rows, caption, label, "booktabs,graphicx")


def to_rich(table: pd.DataFrame, arms: Sequence[str], baseline: str | None) -> Table:
    """The main table for a terminal, transposed to fit one: metrics as rows, a column per arm with its
    mean ± std and, under it, its difference to the baseline."""
    cells = table.set_index(["arm", "metric"], drop=False)
    header = ["metric"] + [f"{arm} (n={int(cells.loc[(arm, METRICS[0].key), 'runs'])})" for arm in arms]
    rows = []
    for spec in METRICS:
        line: list[Cell] = [_title(spec, "rich")]
        for arm in arms:
            row = cells.loc[(arm, spec.key)]
            mean = _mean_cell(row, "rich")
            compared = baseline is not None and arm != baseline
            line.append(Text.assemble(mean, f"\nΔ {_diff_cell(row, 'rich')}") if compared else mean)
        rows.append(line)
    return rich_table(header, rows)


# ----------------------------------------------------------------------------------------------------------------
# PaQ-DETR's ablation format
# ----------------------------------------------------------------------------------------------------------------

PAQ_FLAGS = ("loss.paq.patterns", "loss.paq.assignment")
PAQ_METRICS = ("test/mAP", "test/gini")
PAQ_HEADER = ("patterns", "assignment", "arm", "mAP ↑", "Δ mAP", "Gini ↓", "Δ Gini")


def paq_flags(records: Sequence[RunRecord], arms: Sequence[str]) -> dict[str, tuple[bool, bool]] | None:
    """(pattern queries?, quality-aware assignment?) per arm, from the runs' params; None when no arm uses PaQ."""
    flags = {}
    for arm in arms:
        params = next((r.params for r in records if r.arm == arm and r.params), {})
        patterns, assignment = (str(params.get(key, "false")).lower() == "true" for key in PAQ_FLAGS)
        flags[arm] = (patterns, assignment)
    return flags if any(any(f) for f in flags.values()) else None


def _paq_rows(
    table: pd.DataFrame, flags: dict[str, tuple[bool, bool]], baseline: str | None, fmt: Fmt
) -> list[list[Cell]]:
    """The paper's ablation rows: pattern queries, assignment, arm, mAP, Δ mAP, Gini, Δ Gini."""
    yes, no = (r"$\checkmark$", "") if fmt == "tex" else ("✓", "-")
    rows = []
    for arm, (patterns, assignment) in flags.items():
        part = table[table["arm"] == arm].set_index("metric", drop=False)
        cells: list[Cell] = [yes if patterns else no, yes if assignment else no, _name(arm, fmt)]
        for key in PAQ_METRICS:
            cells += [_mean_cell(part.loc[key], fmt), "" if arm == baseline else _diff_cell(part.loc[key], fmt)]
        rows.append(cells)
    return rows


def paq_markdown(table: pd.DataFrame, flags: dict[str, tuple[bool, bool]], baseline: str | None) -> str:
    return markdown_table(PAQ_HEADER, _paq_rows(table, flags, baseline, "md"))


def paq_rich(table: pd.DataFrame, flags: dict[str, tuple[bool, bool]], baseline: str | None) -> Table:
    return rich_table(PAQ_HEADER, _paq_rows(table, flags, baseline, "rich"))


def paq_latex(table: pd.DataFrame, flags: dict[str, tuple[bool, bool]], baseline: str | None, label: str) -> str:
    """PaQ-DETR's ablation table (needs ``\\usepackage{booktabs,amssymb,graphicx}``)."""
    header = [latex_escape(h) for h in PAQ_HEADER]
    caption = latex_escape(
        "Pattern-sharing queries and quality-aware assignment (PaQ-DETR ablation): mAP and Gini of query "
        f"activation, mean ± std over seeds; Δ to {baseline}: {METHOD}."
    )
    rows = _paq_rows(table, flags, baseline, "tex")
    return latex_table("table", "cclcccc", header, rows, caption, f"{label}-paq", "booktabs,amssymb,graphicx")
