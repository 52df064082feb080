"""The primary-outcomes section of a study's report, against values computed by scipy and statsmodels directly."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import tt_solve_power

from analysis import report
from analysis.figures import paired_seeds
from analysis.outcomes import outcome_notes, outcome_table, outcomes_markdown, scene_values
from analysis.runs import RunRecord

BASE, FIX, OTHER = "focal_filtered", "focal_onehot", "detr_ce"
SCENES = ("test_0000", "test_0001", "test_0002")
PRIMARY = ["test/mAP", "test/hc_fp_cls_per_frame"]
# Per (arm, seed): the three test scenes' mAP; FIX beats BASE by exactly 0.1 in every scene, OTHER is noisy.
MAP = {
    BASE: [[0.30, 0.40, 0.50], [0.20, 0.35, 0.45], [0.25, 0.30, 0.60]],
    FIX: [[0.40, 0.50, 0.60], [0.30, 0.45, 0.55], [0.35, 0.40, 0.70]],
    OTHER: [[0.31, 0.38, 0.52], [0.22, 0.30, 0.47], [0.20, 0.36, 0.58]],
}
HC_FP = {BASE: [9.0, 7.0, 8.0], FIX: [1.0, 1.5, 0.5], OTHER: [8.5, 7.5, 6.0]}  # lower is better


def run_metrics(arm: str, seed: int) -> dict[str, float]:
    scenes = MAP[arm][seed]
    metrics = {"test/mAP": float(np.mean(scenes)), "test/hc_fp_cls_per_frame": HC_FP[arm][seed]}
    for scene, value in zip(SCENES, scenes, strict=True):
        metrics[f"test_scene/{scene}/mAP"] = value
        metrics[f"test_scene/{scene}/hc_fp_cls_per_frame"] = HC_FP[arm][seed] + (SCENES.index(scene) - 1) * 0.5
    return metrics


def records() -> list[RunRecord]:
    return [
        RunRecord(arm, seed, "FINISHED", run_metrics(arm, seed), run_id=f"{arm}-{seed}", end_time=seed)
        for arm in (BASE, FIX, OTHER)
        for seed in range(3)
    ]


def row(table: pd.DataFrame, arm: str, metric: str) -> pd.Series:
    [found] = [r for _, r in table.iterrows() if r["arm"] == arm and r["metric"] == metric]
    return found


def test_scene_values_read_each_scene_of_one_metric():
    values = scene_values(records()[0], "test/mAP")
    assert values == dict(zip(SCENES, MAP[BASE][0], strict=True))


@pytest.mark.filterwarnings("ignore:Precision loss occurred in moment calculation")  # FIX - BASE is constant
def test_primary_tests_equal_scipy_and_statsmodels_and_holm_runs_over_every_arm_and_metric():
    table = outcome_table(records(), [BASE, FIX, OTHER], BASE, PRIMARY)
    assert len(table) == 6  # 3 arms x 2 metrics; the baseline's rows hold no test
    mean = {a: [float(np.mean(s)) for s in MAP[a]] for a in MAP}
    raw = {
        (FIX, "test/mAP"): stats.ttest_rel(mean[FIX], mean[BASE]).pvalue,
        (OTHER, "test/mAP"): stats.ttest_rel(mean[OTHER], mean[BASE]).pvalue,
        (FIX, "test/hc_fp_cls_per_frame"): stats.ttest_rel(HC_FP[FIX], HC_FP[BASE]).pvalue,
        (OTHER, "test/hc_fp_cls_per_frame"): stats.ttest_rel(HC_FP[OTHER], HC_FP[BASE]).pvalue,
    }
    adjusted = dict(zip(raw, multipletests(list(raw.values()), method="holm")[1], strict=True))
    for (arm, metric), p in raw.items():
        r = row(table, arm, metric)
        assert r["t_p"] == pytest.approx(p, rel=1e-12)
        assert r["holm_p"] == pytest.approx(adjusted[arm, metric], rel=1e-12)
        assert r["survives"] == (adjusted[arm, metric] < 0.05)
        d = np.subtract(*(mean[a] if metric == "test/mAP" else HC_FP[a] for a in (arm, BASE)))
        exact = stats.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf).pvalue
        assert r["sign_flip_p"] == pytest.approx(exact, rel=1e-12)
    # 3 pairs of one sign: 2 of the 8 sign patterns are as extreme.
    assert row(table, FIX, "test/mAP")["sign_flip_p"] == row(table, FIX, PRIMARY[1])["sign_flip_p"] == 0.25
    assert pd.isna(row(table, BASE, "test/mAP")["t_p"]) and not row(table, BASE, "test/mAP")["survives"]
    assert row(table, FIX, "test/mAP")["survives"]  # a constant +0.1 over seeds: p = 0, and 0 after Holm


def test_the_paired_bootstrap_keeps_seeds_and_scenes_paired():
    table = outcome_table(records(), [BASE, FIX, OTHER], BASE, PRIMARY)
    fix = row(table, FIX, "test/mAP")
    # FIX - BASE is +0.1 in every (seed, scene): every paired draw gives exactly that, despite big scene effects.
    assert fix["diff_low"] == pytest.approx(0.1) and fix["diff_high"] == pytest.approx(0.1)
    base = row(table, BASE, "test/mAP")
    assert base["boot_low"] < base["mean"] < base["boot_high"] and base["boot_high"] - base["boot_low"] > 0.1
    assert base["n_scenes"] == 3 and base["var_test"] > base["var_seed"]  # the scenes differ more than the seeds


def test_each_interval_is_around_its_own_estimate_when_the_whole_split_metric_is_not_the_scene_mean():
    # mAP pools its matches over the split, so it is not the mean of its per-scene values: here 0.2 above it.
    pooled = [r for r in records() if r.arm in (BASE, FIX)]
    for r in pooled:
        r.metrics["test/mAP"] += 0.2
    table = outcome_table(pooled, [BASE, FIX], BASE, ["test/mAP"])
    base, fix = row(table, BASE, "test/mAP"), row(table, FIX, "test/mAP")
    assert base["mean"] == pytest.approx(np.mean(MAP[BASE]) + 0.2)  # the whole-split value, as the main table's
    assert base["scene_mean"] == pytest.approx(np.mean(MAP[BASE]))  # the bootstrap's own estimate
    assert base["boot_low"] < base["scene_mean"] < base["boot_high"] < base["mean"]
    assert fix["diff"] == pytest.approx(0.1) and fix["scene_diff"] == pytest.approx(0.1)
    [line] = [line for line in outcomes_markdown(table, []).splitlines() if line.startswith(f"| mAP | {BASE}")]
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2] == f"{np.mean(MAP[BASE]) + 0.2:.3f}"
    assert cells[4] == f"{np.mean(MAP[BASE]):.3f} [{base['boot_low']:.3f}, {base['boot_high']:.3f}]"


def test_probability_of_improvement_follows_the_metric_direction():
    table = outcome_table(records(), [BASE, FIX, OTHER], BASE, PRIMARY)
    for metric in PRIMARY:  # FIX is better in every pair of runs on both: mAP higher, false positives fewer
        assert row(table, FIX, metric)["poi"] == pytest.approx(1.0)
    other = row(table, OTHER, "test/hc_fp_cls_per_frame")
    u = stats.mannwhitneyu([-v for v in HC_FP[OTHER]], [-v for v in HC_FP[BASE]]).statistic
    assert other["poi"] == pytest.approx(u / 9)


def test_seeds_for_power_at_the_holm_level_equal_statsmodels():
    table = outcome_table(records(), [BASE, FIX, OTHER], BASE, PRIMARY)
    d = np.subtract(HC_FP[OTHER], HC_FP[BASE])
    expected = math.ceil(tt_solve_power(abs(d.mean()) / d.std(ddof=1), alpha=0.05 / 4, power=0.8))
    assert row(table, OTHER, "test/hc_fp_cls_per_frame")["seeds_needed"] == max(2, expected)
    notes = outcome_notes(table, "python -m experiments.run +ab=loss_fix", [BASE, FIX, OTHER], [0, 1, 2])
    assert any("cannot go below p = 0.25" in n and "at least 8 seeds" in n for n in notes)  # 2 / 2^8 <= 0.0125
    [command] = [n for n in notes if "finished jobs are skipped" in n]
    arms = f"loss={BASE},{FIX},{OTHER}"  # the study's arms: a command-line sweep of loss or seed replaces the file's
    assert (
        f"`python -m experiments.run +ab=loss_fix {arms} seed='range(0,{int(table['seeds_needed'].max())})'`" in command
    )


def test_the_figure_joins_each_seeds_runs_across_arms():
    fig = paired_seeds(records(), PRIMARY)
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["mAP", "HC-FP(cls)/frame"]
    lines = [line for line in axes[0].get_lines() if len(line.get_xdata()) == 3]
    assert len(lines) == 3  # one line per seed through its three arms
    assert sorted(tuple(line.get_ydata()) for line in lines) == sorted(
        tuple(float(np.mean(MAP[a][s])) for a in (BASE, FIX, OTHER)) for s in range(3)
    )


def test_the_report_of_a_study_with_primary_outcomes_writes_them_in_every_format(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow = MlflowClient(tracking_uri=uri)
    exp = mlflow.create_experiment("sparse4d_lab", artifact_location=(tmp_path / "artifacts").as_uri())
    tags = {"kind": "study", "ab": "loss_fix", "arms": f"{BASE},{FIX},{OTHER}", "seeds": "0,1,2", "baseline": BASE}
    tags |= {"primary": ",".join(PRIMARY), "command": "python -m experiments.run +ab=loss_fix trainer.max_epochs=2"}
    parent = mlflow.create_run(exp, tags=tags).info.run_id
    for r in records():
        job = {"kind": "job", MLFLOW_PARENT_RUN_ID: parent, "ab": "loss_fix", "arm": r.arm, "seed": str(r.seed)}
        run_id = mlflow.create_run(exp, tags=job).info.run_id
        mlflow.log_batch(run_id, metrics=[Metric(k, v, 0, 0) for k, v in r.metrics.items()])
        mlflow.set_terminated(run_id, "FINISHED")
    out = tmp_path / "report"
    assert report.main(["--tracking-uri", uri, "--ab", "loss_fix", "--out", str(out)]) == 0
    markdown = (out / "study_table.md").read_text()
    assert "## Primary outcomes" in markdown and "trainer.max_epochs=2 loss=" in markdown
    assert "Primary outcomes: mAP, HC-FP(cls)/frame" in markdown
    csv = pd.read_csv(out / "primary_outcomes.csv")
    assert len(csv) == 6 and {"holm_p", "sign_flip_p", "diff_low", "poi", "seeds_needed", "var_test"} <= set(csv)
    tex = (out / "primary_outcomes.tex").read_text()
    assert r"\toprule" in tex and r"focal\_onehot" in tex and r"$\checkmark$" in tex
    assert (out / "figures" / "primary_per_seed.png").stat().st_size > 1000
    # --primary replaces the study's choice: one metric, so Holm runs over the two arms only.
    assert report.main(["--tracking-uri", uri, "--ab", "loss_fix", "--out", str(out), "--primary", "test/mAP"]) == 0
    assert len(pd.read_csv(out / "primary_outcomes.csv")) == 3
