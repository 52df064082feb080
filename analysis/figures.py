"""A comparison's figures (seaborn; PNG and PDF), one curve, panel or bar per arm, bands over seeds (±1 std).

Each figure reads what the jobs logged: metrics and their histories, ``evaluation.json`` (false-positive curve,
Lorenz curve) and ``eval_frames.npz`` (per-query scores and matched flags, detections, ground truth). A run without
the artifact a figure needs is left out of it with a warning; a figure no run can feed is skipped with a warning,
so a report never fails for want of a picture.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from sparse4d_lab.eval.collector import frame_detections, load_frames
from sparse4d_lab.eval.detection import DetectionConfig, detection_metric_data
from sparse4d_lab.eval.figures import BEV_CMAP, draw_bev, draw_score_histogram

from .runs import Artifacts, RunRecord
from .stats import summarize
from .table import SPEC

log = logging.getLogger(__name__)
PR_DISTANCE = 2.0  # metres: the nuScenes threshold the PR curves are drawn at


class MissingData(RuntimeError):
    """No run of the comparison has what a figure needs."""


Runs = Sequence[RunRecord]  # the runs used, in row order (arm by arm)


def _frames(artifacts: Artifacts, run: RunRecord) -> tuple[list[dict[str, Any]], list[str]] | None:
    return artifacts.load(run.run_id, "eval_frames.npz", load_frames)


def _grid(n: int, width: float = 3.6, height: float = 2.8, ncols: int = 3) -> tuple[plt.Figure, np.ndarray]:
    cols = min(n, ncols)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()


def _arms(runs: Runs) -> list[str]:
    return list(dict.fromkeys(r.arm for r in runs))


def band_plot(ax: plt.Axes, data: pd.DataFrame, x: str, y: str, order: Sequence[str], legend: bool = True) -> None:
    """Mean over seeds of ``y`` against ``x``, one line per arm (seaborn palette), a ±1 std band around it.

    What ``sns.lineplot(errorbar="sd")`` draws, aggregated in one vectorised groupby: lineplot's per-x loop
    takes seconds on curves of 101 points, and the report must stay quick at the end of a study.
    """
    stats = data.groupby(["arm", x])[y].agg(["mean", "std"]).reset_index()
    for arm, colour in zip(order, sns.color_palette(n_colors=len(order)), strict=True):
        line = stats[stats["arm"] == arm]
        if len(line):
            ax.plot(line[x], line["mean"], color=colour, label=arm)
            low, high = line["mean"] - line["std"].fillna(0), line["mean"] + line["std"].fillna(0)
            ax.fill_between(line[x], low, high, color=colour, alpha=0.2, lw=0)
    ax.set(xlabel=x, ylabel=y)
    if legend:
        ax.legend(fontsize="small")


def score_distributions(runs: Runs, artifacts: Artifacts) -> plt.Figure:
    """Scores of matched vs unmatched queries, one panel per arm (seeds pooled): the figure that shows the bug."""
    pooled: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        data = _frames(artifacts, run)
        if data:
            pooled.setdefault(run.arm, []).extend(data[0])
    if not pooled:
        raise MissingData("no run has eval_frames.npz")
    fig, axes = _grid(len(pooled))
    for ax, (arm, frames) in zip(axes, pooled.items(), strict=False):
        scores = np.concatenate([f["query_scores"] for f in frames])
        matched = np.concatenate([f["matched"] for f in frames]).astype(bool)
        draw_score_histogram(ax, scores, matched)
        unmatched = scores[~matched].astype(float)
        mean = f"{unmatched.mean():.2f}" if unmatched.size else "n/a"
        ax.set_title(f"{arm}: unmatched mean {mean}", fontsize=9)
    fig.suptitle("Query scores, matched vs unmatched (seeds pooled)", fontsize=10)
    return fig


def fp_vs_threshold(runs: Runs, artifacts: Artifacts) -> plt.Figure:
    """Class-aware false positives per frame against the score threshold, one curve per arm, band over seeds."""
    rows = []
    for run in runs:
        report = artifacts.evaluation(run.run_id)
        curve = (report or {}).get("false_positives", {}).get("curve")
        if curve:
            for t, fp in zip(curve["score_thresholds"], curve["fp_per_frame"], strict=True):
                rows.append({"arm": run.arm, "seed": run.seed, "score threshold": t, "FP per frame": fp})
    if not rows:
        raise MissingData("no run has a false-positive curve in evaluation.json")
    fig, ax = plt.subplots(figsize=(5.5, 3.6), layout="constrained")
    data = pd.DataFrame(rows)
    band_plot(ax, data, "score threshold", "FP per frame", _arms(runs))
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_title("False positives per frame (class aware, 2 m); band: ±1 std over seeds", fontsize=9)
    return fig


def pr_curves(runs: Runs, artifacts: Artifacts) -> plt.Figure:
    """Precision-recall per class at 2 m (nuScenes matching, 101 recall points), one curve per arm."""
    rows = []
    classes: list[str] = []
    for run in runs:
        data = _frames(artifacts, run)
        if not data:
            continue
        frames, classes = data
        gt, pred = frame_detections(frames, classes, gt=True), frame_detections(frames, classes, gt=False)
        if len(gt) == 0:
            log.warning("run %s: no ground truth in eval_frames.npz, left out of the PR curves", run.run_id)
            continue
        config = DetectionConfig(classes=tuple(classes), dist_ths=(PR_DISTANCE,), dist_th_tp=PR_DISTANCE)
        used, curves = detection_metric_data(gt, pred, config)
        for name in used:
            md = curves[(name, PR_DISTANCE)]
            rows += [
                {"arm": run.arm, "seed": run.seed, "class": name, "recall": r, "precision": p}
                for r, p in zip(md.recall, md.precision, strict=True)
            ]
    if not rows:
        raise MissingData("no run has eval_frames.npz with ground truth")
    data = pd.DataFrame(rows)
    fig, axes = _grid(len(classes), width=3.4, height=3.0, ncols=2)
    for i, (ax, name) in enumerate(zip(axes, classes, strict=False)):
        sel = data[data["class"] == name]
        band_plot(ax, sel, "recall", "precision", _arms(runs), legend=i == 0)
        ax.set(xlim=(0, 1), ylim=(0, 1.02))
        ax.set_title(f"{name} (2 m)", fontsize=9)
    fig.suptitle("Precision-recall per class; band: ±1 std over seeds", fontsize=10)
    return fig


def training_curves(runs: Runs, artifacts: Artifacts) -> plt.Figure:
    """Training loss, validation mAP and the unmatched queries' mean class score (the bug's inflation, epoch by
    epoch) against the step, one curve per arm, band over seeds."""
    panels = (
        ("train/loss", "training loss"),
        ("val/mAP", "validation mAP"),
        ("val/unmatched_score_mean", "unmatched-query class score"),
    )
    rows = []
    for run in runs:
        for key, title in panels:
            rows += [
                {"arm": run.arm, "seed": run.seed, "panel": title, "step": m.step, "value": m.value}
                for m in artifacts.history(run.run_id, key)
            ]
    if not rows:
        raise MissingData("no run has a train/loss or val/mAP history")
    data = pd.DataFrame(rows)
    fig, axes = plt.subplots(1, len(panels), figsize=(15, 3.4), layout="constrained")
    for i, (ax, (_, title)) in enumerate(zip(axes, panels, strict=True)):
        sel = data[data["panel"] == title]
        if len(sel):
            band_plot(ax, sel, "step", "value", _arms(runs), legend=i == 0)
        ax.set(ylabel=title, title=f"{title}; band: ±1 std over seeds")
    return fig


def lorenz_curves(runs: Runs, artifacts: Artifacts) -> plt.Figure:
    """Lorenz curves of query activation (matched slots), one per arm with its Gini (mean ± std) in the legend."""
    rows, ginis = [], {}
    for run in runs:
        queries = ((artifacts.evaluation(run.run_id) or {}).get("queries") or {}).get("matched")
        if queries:
            lorenz = queries["lorenz"]
            ginis.setdefault(run.arm, []).append(queries["gini"])
            rows += [
                {"arm": run.arm, "seed": run.seed, "share of queries": x, "share of activations": y}
                for x, y in zip(lorenz["slots"], lorenz["activations"], strict=True)
            ]
    if not rows:
        raise MissingData("no run has query-activation data in evaluation.json")
    data = pd.DataFrame(rows)
    labels = {}
    for arm, values in ginis.items():
        s = summarize(values)
        labels[arm] = f"{arm} (Gini {s.mean:.3f}" + ("" if math.isnan(s.std) else f" ± {s.std:.3f}") + ")"
    data["arm"] = data["arm"].map(labels)
    fig, ax = plt.subplots(figsize=(4.8, 4.2), layout="constrained")
    ax.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="equal use (Gini 0)")
    band_plot(ax, data, "share of queries", "share of activations", [labels.get(a, a) for a in _arms(runs)])
    ax.set(xlim=(0, 1), ylim=(0, 1))
    ax.set_title("Query activation (matched slots, test set)", fontsize=9)
    return fig


def tracking_errors(runs: Runs, artifacts: Artifacts) -> plt.Figure:
    """ID switches and spurious tracks per arm: bars of the mean (±1 std), a dot per seed."""
    panels = (("test/id_switches", "ID switches"), ("test/spurious_tracks", "spurious tracks"))
    rows = [
        {"arm": run.arm, "seed": run.seed, "panel": title, "value": run.metrics[key]}
        for run in runs
        for key, title in panels
        if key in run.metrics
    ]
    if not rows:
        raise MissingData("no run has test/id_switches or test/spurious_tracks")
    data = pd.DataFrame(rows)
    arms = [a for a in _arms(runs) if a in set(data["arm"])]
    fig, axes = plt.subplots(1, 2, figsize=(max(6.0, 1.6 * len(arms) + 2), 3.4), layout="constrained")
    for ax, (_, title) in zip(axes, panels, strict=True):
        sel = data[data["panel"] == title]
        sns.barplot(sel, x="arm", y="value", order=arms, errorbar="sd", ax=ax, color="#9ecae1")
        sns.stripplot(sel, x="arm", y="value", order=arms, ax=ax, color="k", size=4)
        ax.set(xlabel="", ylabel=title, title=f"{title} (test); dots: seeds")
        ax.tick_params(axis="x", labelrotation=20)
    return fig


PER_CLASS_PANELS = (
    ("test/unmatched_score/", "unmatched-query score"),
    ("test/hc_fp_cls_per_frame/", "HC-FP(cls)/frame"),
)


def per_class(runs: Runs, artifacts: Artifacts) -> plt.Figure:
    """Arm x class heat maps of each class column's unmatched-query mean score and of the confident false
    positives per predicted class: a loss that drops one class's negative signal lights up one cell, which the
    pooled columns dilute. Cells: the seed mean, the seed std under it."""
    rows = [
        {"arm": run.arm, "panel": title, "class": key.removeprefix(prefix), "value": value}
        for run in runs
        for key, value in run.metrics.items()
        for prefix, title in PER_CLASS_PANELS
        if key.startswith(prefix)
    ]
    if not rows:
        raise MissingData("no run has per-class metrics (test/unmatched_score/<class>)")
    data = pd.DataFrame(rows)
    arms = [a for a in _arms(runs) if a in set(data["arm"])]
    classes = list(dict.fromkeys(data["class"]))
    fig, axes = plt.subplots(
        1, 2, figsize=(2.2 + 2.4 * len(classes), 1.2 + 0.5 * len(arms)), squeeze=False, layout="constrained"
    )
    for ax, (_, title) in zip(axes[0], PER_CLASS_PANELS, strict=True):
        sel = data[data["panel"] == title]
        grid = sel.pivot_table(index="arm", columns="class", values="value", aggfunc=["mean", "std"])
        mean = grid["mean"].reindex(index=arms, columns=classes)
        std = grid["std"].reindex(index=arms, columns=classes) if "std" in grid else mean * math.nan
        text = mean.map(lambda v: f"{v:.3f}") + std.map(lambda v: "" if math.isnan(v) else f"\n±{v:.3f}")
        sns.heatmap(mean, annot=text, fmt="", cmap="rocket_r", ax=ax, cbar_kws={"label": title}, annot_kws={"size": 7})
        ax.set(xlabel="", ylabel="", title=f"{title} by class (test)")
        ax.tick_params(axis="x", labelrotation=20, labelsize=7)
    fig.suptitle("Per class: seed mean, ± seed std under it", fontsize=9)
    return fig


def bev_frames(runs: Runs, artifacts: Artifacts) -> plt.Figure:
    """The same evaluation frame seen by each arm (its first seed): GT outlined, detections coloured by score."""
    first: dict[str, tuple[RunRecord, list[dict[str, Any]], list[str]]] = {}
    for run in runs:
        if run.arm not in first and (data := _frames(artifacts, run)):
            first[run.arm] = (run, *data)
    if not first:
        raise MissingData("no run has eval_frames.npz")
    reference = next(iter(first.values()))[1]
    sample = reference[len(reference) // 2]["sample"]
    panels = []
    for arm, (run, frames, classes) in first.items():
        frame = next((f for f in frames if f["sample"] == sample), None)
        if frame is None:
            log.warning("arm %s (run %s) has no frame %s: left out of the BEV figure", arm, run.run_id, sample)
        else:
            panels.append((arm, run, frame, classes))
    fig, axes = _grid(len(panels), width=4.2, height=3.4)
    for ax, (arm, run, frame, classes) in zip(axes, panels, strict=False):
        draw_bev(ax, frame, classes)
        ax.set_title(f"{arm} (seed {run.seed})", fontsize=9)
    fig.colorbar(plt.cm.ScalarMappable(cmap=BEV_CMAP), ax=list(axes[: len(panels)]), label="detection score")
    fig.suptitle(f"Test frame {sample}: GT outlined, distractors grey, detections filled with ids", fontsize=10)
    return fig


def paired_seeds(runs: Runs, primary: Sequence[str]) -> plt.Figure:
    """Each primary metric per seed: a point per run and a line through one seed's runs across the arms, the
    pairing every test of the primary outcomes uses."""
    if not primary:
        raise MissingData("the comparison declares no primary outcomes (the study file's primary, or --primary)")
    arms = _arms(runs)
    fig, axes = _grid(len(primary))
    for ax, metric in zip(axes, primary, strict=False):
        rows = [{"arm": r.arm, "seed": r.seed, "value": r.metrics.get(metric, math.nan)} for r in runs]
        data = pd.DataFrame(rows).dropna()
        for _, part in data.groupby("seed"):
            values = part.set_index("arm")["value"].reindex(arms)
            ax.plot(range(len(arms)), values.to_numpy(), color="0.6", lw=0.8, zorder=1)
        data["seed"] = data["seed"].astype(str)
        sns.stripplot(data=data, x="arm", y="value", hue="seed", order=arms, ax=ax, jitter=False, size=5, zorder=2)
        ax.set_title(SPEC[metric].title if metric in SPEC else metric, fontsize=9)
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.tick_params(axis="x", labelrotation=20, labelsize=7)
    fig.suptitle("Primary outcomes per seed (lines join one seed's runs)", fontsize=10)
    return fig


FIGURES: dict[str, Callable[[Runs, Artifacts], plt.Figure]] = {
    "score_distributions": score_distributions,
    "fp_vs_threshold": fp_vs_threshold,
    "pr_curves": pr_curves,
    "training_curves": training_curves,
    "lorenz": lorenz_curves,
    "tracking_errors": tracking_errors,
    "per_class": per_class,
    "bev_frames": bev_frames,
}


def draw_figures(runs: Runs, artifacts: Artifacts, out_dir: Path, primary: Sequence[str] = ()) -> list[Path]:
    """Every figure as PNG and PDF under ``out_dir``; one that cannot be drawn is skipped with a warning."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    figures = {**FIGURES, **({"primary_per_seed": lambda runs, _: paired_seeds(runs, primary)} if primary else {})}
    for name, draw in figures.items():
        try:
            with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
                fig = draw(runs, artifacts)
        except MissingData as err:
            log.warning("figure %s skipped: %s", name, err)
            continue
        except Exception:  # a report must not fail (nor fail a study) for a picture
            log.warning("figure %s failed", name, exc_info=True)
            plt.close("all")
            continue
        for suffix in ("png", "pdf"):
            path = out_dir / f"{name}.{suffix}"
            fig.savefig(path, dpi=120)
            fig.set_layout_engine("none")  # laid out once: the PDF reuses the PNG's layout
            written.append(path)
        plt.close(fig)
    return written
