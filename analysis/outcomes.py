"""A study's primary outcomes: the few comparisons it was run to make, tested so that a reviewer can trust them.

For each arm against the baseline and each primary metric (the study file's ``primary``): the paired t-test and
the exact sign-flip test over seeds, Holm's correction across every (arm, primary metric) test of the study, a
two-level bootstrap over seeds and test scenes (the test split's own sampling error, which a spread over seeds
hides), how that variance splits between seeds and test scenes, the probability of improvement with its
bootstrap interval, the interquartile mean from 5 seeds on, and how many seeds 80 % power needs at the corrected
level. Every other metric of the main table is exploratory: its p-value is uncorrected.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from sparse4d_lab.eval.keys import SCENE_PREFIX

from .render import Fmt, latex_escape, latex_table, markdown_table, rich_table
from .runs import RunRecord
from .stats import (
    IQM_MIN_RUNS,
    hierarchical_bootstrap,
    holm,
    iqm,
    paired_difference,
    paired_hierarchical_bootstrap,
    probability_of_improvement,
    seeds_for_power,
    sign_flip_min_p,
    sign_flip_p,
    sign_flip_pairs_needed,
    summarize,
    variance_parts,
)
from .table import SPEC, usable_runs

ALPHA = 0.05
POWER = 0.8
COLUMNS = (
    "arm", "metric", "title", "primary", "n_pairs", "mean", "iqm", "scene_mean", "boot_low", "boot_high", "n_scenes",
    "var_seed", "var_test", "diff", "t_p", "sign_flip_p", "holm_p", "survives", "scene_diff", "diff_low", "diff_high",
    "poi", "poi_low", "poi_high", "seeds_needed",
)  # fmt: skip


def scene_values(run: RunRecord, metric: str) -> dict[str, float]:
    """A run's per-test-scene values of ``metric`` (``test/<name>``), from its ``test_scene/<scene>/<name>``."""
    name = metric.removeprefix("test/")
    out = {}
    for key, value in run.metrics.items():
        if key.startswith(SCENE_PREFIX) and key.rsplit("/", 1)[1] == name and math.isfinite(value):
            out[key[len(SCENE_PREFIX) :].rsplit("/", 1)[0]] = value
    return out


def _oriented(values: Sequence[float], higher_is_better: bool) -> list[float]:
    return [v if higher_is_better else -v for v in values]


def outcome_table(
    records: Sequence[RunRecord], arms: Sequence[str], baseline: str | None, primary: Sequence[str]
) -> pd.DataFrame:
    """One row per (arm, primary metric); the baseline's rows hold its own mean and variance parts only."""
    cells, _ = usable_runs(records)
    rows = []
    for metric in primary:
        spec = SPEC.get(metric)
        title = spec.title if spec else metric
        higher = spec.higher_is_better if spec else True
        base_runs = cells.get(baseline, {}) if baseline is not None else {}
        base = {s: r.metrics.get(metric, math.nan) for s, r in base_runs.items()}
        base_scenes = {s: scene_values(r, metric) for s, r in base_runs.items()}
        for arm in arms:
            runs = cells.get(arm, {})
            values = {s: r.metrics.get(metric, math.nan) for s, r in runs.items()}
            scenes = {s: v for s, r in runs.items() if (v := scene_values(r, metric))}
            boot = hierarchical_bootstrap(scenes)
            var_seed, var_test = variance_parts(scenes)
            row = {
                "arm": arm, "metric": metric, "title": title, "primary": True,
                "mean": summarize(list(values.values())).mean, "iqm": iqm(list(values.values())),
                "scene_mean": boot.estimate, "boot_low": boot.low, "boot_high": boot.high,
                "n_scenes": boot.n_scenes, "var_seed": var_seed, "var_test": var_test,
            }  # fmt: skip
            if arm != baseline and baseline is not None:
                diff = paired_difference(values, base)
                seeds = sorted(s for s in values.keys() & base.keys())
                d = [values[s] - base[s] for s in seeds]
                paired = paired_hierarchical_bootstrap(
                    scenes, {s: base_scenes[s] for s in base_scenes if base_scenes[s]}
                )
                poi = probability_of_improvement(list(values.values()), list(base.values()), higher_is_better=higher)
                row.update(
                    n_pairs=diff.n, diff=diff.mean, t_p=diff.p_value, sign_flip_p=sign_flip_p(d),
                    scene_diff=paired.estimate, diff_low=paired.low, diff_high=paired.high, poi=poi.estimate,
                    poi_low=poi.low, poi_high=poi.high,
                )  # fmt: skip
                row["_d"] = _oriented(d, higher)
            rows.append(row)
    table = pd.DataFrame(rows, columns=[*COLUMNS, "_d"])
    tested = table["t_p"].notna()
    family = int(tested.sum())
    table.loc[tested, "holm_p"] = holm(table.loc[tested, "t_p"].tolist())
    table["survives"] = table["holm_p"].lt(ALPHA)
    level = ALPHA / max(family, 1)  # Holm's first step: the level the smallest p must meet
    table["seeds_needed"] = [seeds_for_power(d, level, POWER) if isinstance(d, list) else math.nan for d in table["_d"]]
    return table.drop(columns="_d")


def outcome_notes(table: pd.DataFrame, command: str, arms: Sequence[str], seeds: Sequence[int]) -> list[str]:
    """What the numbers cannot say at this seed count, and the command that adds the seeds 80 % power needs."""
    tests = table[table["t_p"].notna()]
    if tests.empty:
        return []
    family, n = len(tests), int(tests["n_pairs"].min())
    notes = [
        f"Holm's correction over the {family} primary tests (arms x primary metrics) at level {ALPHA}; "
        "every other metric of the main table is exploratory (uncorrected p)."
    ]
    floor = sign_flip_min_p(n)
    if floor > ALPHA / family:
        notes.append(
            f"With {n} paired seeds the exact sign-flip test cannot go below p = {floor:.3g}, above the corrected "
            f"level {ALPHA / family:.3g}: it needs at least {sign_flip_pairs_needed(ALPHA / family)} seeds to "
            "reject anything; the t-test reaches lower p only by assuming normal differences."
        )
    needed = tests["seeds_needed"].dropna()
    if not needed.empty and needed.max() > n:
        worst = tests.loc[needed.idxmax()]
        notes.append(
            f"Seeds for {POWER:.0%} power (last column) are at the corrected level {ALPHA / family:.3g}, from the "
            f"observed mean and spread of each paired difference; the most, {int(worst['seeds_needed'])} "
            f"({worst['title']}, {worst['arm']}), run with (finished jobs are skipped): "
            f"`{command} loss={','.join(arms)} seed='range(0,{max(int(needed.max()), max(seeds, default=-1) + 1)})'`"
        )
    if (table["n_scenes"] == 0).any():
        notes.append("Runs without per-scene test metrics (older runs) have no bootstrap over test scenes.")
    if table["n_pairs"].max() < IQM_MIN_RUNS:
        notes.append(f"IQM: shown from {IQM_MIN_RUNS} seeds on.")
    return notes


HEADER = (
    "metric", "arm", "mean", "IQM", "per-scene mean [95 % CI]", "var: seeds / test", "Δ", "per-scene Δ [95 % CI]",
    "p (t)", "p (sign-flip)", "p (Holm)", "P(better) [95 % CI]", "seeds for 80 %",
)  # fmt: skip


def _num(value: float, fmt: str, signed: bool = False) -> str:
    return "n/a" if pd.isna(value) else format(value, ("+" if signed else "") + fmt)


def _p(value: float) -> str:
    return "n/a" if pd.isna(value) else ("<0.001" if value < 0.001 else f"{value:.3f}")


def _rows(table: pd.DataFrame, fmt: Fmt) -> list[list[str]]:
    rows = []
    for _, r in table.iterrows():
        f = SPEC[r["metric"]].fmt if r["metric"] in SPEC else ".3f"
        share = r["var_seed"] / (r["var_seed"] + r["var_test"]) if r["var_seed"] + r["var_test"] > 0 else math.nan
        split = "n/a" if pd.isna(share) else f"{share:.0%} / {1 - share:.0%}"
        row = [
            r["title"], r["arm"], _num(r["mean"], f), _num(r["iqm"], f),
            f"{_num(r['scene_mean'], f)} [{_num(r['boot_low'], f)}, {_num(r['boot_high'], f)}]", split,
        ]  # fmt: skip
        if pd.isna(r["t_p"]):
            row += ["baseline" if pd.isna(r["diff"]) else _num(r["diff"], f, True), *["-"] * 6]
        else:
            holm_p = _p(r["holm_p"]) + (" ✓" if r["survives"] else "")
            scene_diff = _num(r["scene_diff"], f, True)
            row += [
                _num(r["diff"], f, True),
                f"{scene_diff} [{_num(r['diff_low'], f, True)}, {_num(r['diff_high'], f, True)}]",
                _p(r["t_p"]), _p(r["sign_flip_p"]), holm_p,
                f"{_num(r['poi'], '.2f')} [{_num(r['poi_low'], '.2f')}, {_num(r['poi_high'], '.2f')}]",
                "n/a" if pd.isna(r["seeds_needed"]) else str(int(r["seeds_needed"])),
            ]  # fmt: skip
        rows.append([latex_escape(c) for c in row] if fmt == "tex" else row)
    return rows


METHOD = (
    "Primary outcomes. mean: over seeds of the metric on the whole test split, as in the main table. per-scene mean "
    "[95 % CI]: the mean of the metric computed on each test scene alone, with its two-level bootstrap over seeds and "
    "test scenes, one scene draw for all seeds (percentile, 10,000 draws); a metric that pools its matches over the "
    "split (mAP, IDF1) differs from the mean of its per-scene values, so the interval is around the latter. var: the "
    "share of the per-scene mean's variance from seeds and from test scenes. Δ: mean paired difference (arm - "
    "baseline) of the whole-split values, the one the tests take; per-scene Δ: the same of the per-scene means, with "
    "the paired two-level bootstrap's CI. p (t): two-sided paired t-test; p (sign-flip): exact paired sign-flip "
    "test; p (Holm): the t-test's p after Holm's correction over every primary test, ✓ where it stays below 0.05. "
    "P(better): probability that a run of the arm beats a run of the baseline (ties count half), bootstrap CI. seeds "
    "for 80 %: paired seeds a t-test needs for 80 % power at the corrected level, given the observed effect and "
    "spread."
)


def outcomes_markdown(table: pd.DataFrame, notes: Sequence[str]) -> str:
    text = markdown_table(HEADER, _rows(table, "md"))
    return "\n".join([text, "", METHOD, *[f"- {n}" for n in notes]])


def outcomes_latex(table: pd.DataFrame, notes: Sequence[str], caption: str, label: str) -> str:
    caption = latex_escape(" ".join([f"{caption}.", METHOD, *notes]))
    header = [latex_escape(h) for h in HEADER]
    return latex_table("table*", "ll" + "c" * (len(HEADER) - 2), header, _rows(table, "tex"), caption, label,
                        "booktabs,graphicx,amssymb")  # fmt: skip


def outcomes_rich(table: pd.DataFrame):
    return rich_table(HEADER, _rows(table, "rich"))
