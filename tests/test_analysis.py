"""Study reports from MLflow: statistics equal hand-computed values, tables in every format, selection and errors.

A temporary SQLite store is filled the way experiments/job.py fills it: a study parent run, child job runs with
known test metrics (one failed, one missing), metric histories, and the artifacts the evaluation collector writes.
"""

from __future__ import annotations

import base64
import csv
import json
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from records import collector_frame
from scipy import stats

from analysis import report
from analysis.figures import FIGURES
from analysis.runs import ReportInputError, RunRecord, select_study
from analysis.stats import paired_difference
from analysis.table import METRICS, comparison_table, missing_runs, table_note, to_latex, usable_runs
from sparse4d_lab.eval.collector import EvalCollector, save_frames
from sparse4d_lab.eval.keys import metric_names

CLASSES = ["person", "nova_carter"]
BASE, FIX, SAME, FEW = "focal_filtered", "focal_onehot", "focal_tao_patch", "vfl"
# Hand-picked test metrics per arm and seed; every other metric of the table is derived by `metrics_of`.
MAP = {BASE: [0.30, 0.32, 0.34], FIX: [0.35, 0.36, 0.40], SAME: [0.30, 0.32, 0.34], FEW: [0.20]}
HC_FP = {BASE: [5.0, 6.0, 7.0], FIX: [1.0, 1.5, 1.0], SAME: [5.0, 6.0, 7.0], FEW: [9.0]}


def metrics_of(arm: str, seed: int) -> dict[str, float]:
    values = {m.key: 1.0 + 0.1 * seed + (0.5 if arm == FIX else 0.0) for m in METRICS}
    values.update({"test/mAP": MAP[arm][seed], "test/hc_fp_per_frame": HC_FP[arm][seed]})
    values["test/spurious_tracks"] = 3.0 + seed + (5.0 if arm == BASE else 0.0)
    for c, name in enumerate(CLASSES):  # the buggy arms' last class inflates on unmatched queries
        values[f"test/unmatched_score/{name}"] = 0.05 + (0.3 * c if arm != FIX else 0.0) + 0.01 * seed
        values[f"test/hc_fp_cls_per_frame/{name}"] = 0.5 * c + 0.1 * seed
    if arm == FIX and seed == 2:
        del values["test/HOTA"]  # one run without a metric: its cell says n=2
    return values


def synthetic_frames(seed: int, inflated: bool, num_frames: int = 6, num_queries: int = 24) -> list[dict]:
    """Frames as EvalCollector.update stores them: two walking targets, their detections plus false positives."""
    rng = np.random.default_rng(seed)
    frames = []
    for t in range(num_frames):
        gt = np.zeros((2, 10), np.float32)
        gt[:, 0], gt[:, 1], gt[:, 2] = [-2.0 + 0.2 * t, 3.0], [1.0, -2.0 + 0.1 * t], 0.9
        gt[:, 3:6] = [[0.6, 0.6, 1.8], [0.9, 0.7, 0.5]]
        det = np.concatenate([gt, gt[:1]])
        det[:2, :2] += rng.normal(0, 0.1, (2, 2))
        det[2, :2] = rng.uniform(-5, 5, 2)  # a false positive
        query_scores = rng.uniform(0, 0.9 if inflated else 0.3, num_queries).astype(np.float32)
        matched = np.zeros(num_queries, bool)
        matched[[1, 5]] = True
        query_scores[matched] = rng.uniform(0.6, 0.95, 2)
        frames.append(
            collector_frame(
                t,
                gt,
                distractors=np.array([[0.0, 4.0, 0.5, 1.2, 0.8, 1.0, 0.3, 0, 0, 0]], np.float32),
                boxes=det.astype(np.float32),
                scores=np.array([0.9, 0.8, 0.7 if inflated else 0.2], np.float32),
                cls_scores=np.array([0.95, 0.9, 0.8 if inflated else 0.25], np.float32),
                labels=np.array([0, 1, 0]),
                ids=np.array([0, 1, 2 + t if inflated else -1]),
                query_scores=query_scores,
                query_class_scores=np.stack([query_scores, 0.5 * query_scores], axis=1),  # the max is class 0's
                matched=matched,
                matched_slots=np.array([1, 5]),
                kept_slots=np.array([1, 5, 9]),
            )
        )
    return frames


def job_artifacts(folder: Path, seed: int, inflated: bool) -> list[Path]:
    """The artifacts the report reads, as the collector writes them: evaluation.json and eval_frames.npz."""
    collector = EvalCollector(CLASSES, num_queries=24)
    collector.frames = synthetic_frames(seed, inflated)
    collector.compute()
    folder.mkdir(parents=True)
    (folder / "evaluation.json").write_text(json.dumps(collector.report, default=float))
    return [folder / "evaluation.json", save_frames(collector.frames, CLASSES, folder / "eval_frames.npz")]


def test_the_collector_returns_exactly_the_metrics_it_names():
    # Sweeps validate their objectives against metric_names: it must list what compute() returns.
    collector = EvalCollector(CLASSES, num_queries=24)
    collector.frames = synthetic_frames(0, inflated=True)
    assert sorted(collector.compute()) == sorted(metric_names(collector.fp_thresholds, CLASSES))


def test_high_confidence_unmatched_queries_count_class_scores_of_unmatched_queries_only():
    collector = EvalCollector(CLASSES, num_queries=24)
    collector.frames = synthetic_frames(0, inflated=False)  # unmatched < 0.3, matched (slots 1, 5) >= 0.6
    assert collector.compute()["hc_unmatched_per_frame"] == 0.0
    collector.frames[0]["query_scores"][[0, 2]] = [0.7, 0.5]  # two unmatched queries at >= 0.5 in one of 6 frames
    assert collector.compute()["hc_unmatched_per_frame"] == pytest.approx(2 / 6, abs=1e-12)


def test_per_class_unmatched_scores_and_the_worst_class_name_the_column_that_inflates():
    collector = EvalCollector(CLASSES, num_queries=24)
    collector.frames = synthetic_frames(0, inflated=False)  # class 0's column is the query score, class 1's half
    unmatched = np.concatenate([f["query_scores"][~f["matched"]] for f in collector.frames])
    metrics = collector.compute()
    assert metrics["unmatched_score/person"] == pytest.approx(float(unmatched.mean()), abs=1e-6)
    assert metrics["unmatched_score/nova_carter"] == pytest.approx(0.5 * float(unmatched.mean()), abs=1e-6)
    assert metrics["unmatched_score_worst"] == metrics["unmatched_score/person"]
    for frame in collector.frames:  # the last class loses its negative signal: its column drifts up alone
        frame["query_class_scores"][~frame["matched"], 1] = 0.8
    metrics = collector.compute()
    assert metrics["unmatched_score/nova_carter"] == pytest.approx(0.8, abs=1e-6)
    assert metrics["unmatched_score_worst"] == metrics["unmatched_score/nova_carter"]
    assert collector.report["query_scores"]["unmatched_by_class"]["nova_carter"]["q99"] == pytest.approx(0.8)

    def run(arm: str, seed: int, person: float, robot: float) -> RunRecord:
        scores = {"test/unmatched_score/person": person, "test/unmatched_score/nova_carter": robot}
        return RunRecord(arm, seed, "FINISHED", scores)

    records = [run("vfl", 0, 0.06, 0.05), run("vfl_clamped", 0, 0.06, 0.2), run("vfl_clamped", 1, 0.07, 0.3)]
    assert table_note(records).endswith(
        "Worst class per arm (seed-mean unmatched score of its column): vfl person (0.060), "
        "vfl_clamped nova_carter (0.250)."
    )


def test_high_confidence_false_positives_are_counted_on_the_output_score_and_on_the_class_score():
    collector = EvalCollector(CLASSES, num_queries=24)
    collector.frames = synthetic_frames(0, inflated=False)  # one false positive a frame, output 0.2, class 0.25
    metrics = collector.compute()
    assert metrics["hc_fp_per_frame"] == 0.0 and metrics["hc_fp_cls_per_frame"] == 0.0
    collector.frames[3]["cls_scores"][2] = 0.6  # a confident class score that a low centerness hides
    metrics = collector.compute()
    assert metrics["hc_fp_per_frame"] == 0.0 and metrics["hc_fp_cls_per_frame"] == pytest.approx(1 / 6, abs=1e-12)


def test_id_switches_at_the_best_mota_threshold_count_tracks_below_the_tracking_threshold():
    collector = EvalCollector(CLASSES, num_queries=24)
    collector.frames = synthetic_frames(0, inflated=False)  # two clean tracks at output scores 0.9 and 0.8
    for t in range(3, 6):
        collector.frames[t]["ids"][0] = 7  # the first object's track changes id half-way
    metrics = collector.compute()
    assert metrics["id_switches"] == 1.0 and metrics["ids_best_mota"] == 1.0
    for frame in collector.frames:
        frame["scores"][0] = 0.25  # below eval.track_min_score (0.3): the fixed-threshold count loses the track
    metrics = collector.compute()
    assert metrics["id_switches"] == 0.0 and metrics["ids_best_mota"] == 1.0


def add_job(
    mlflow: MlflowClient,
    exp: str,
    parent: str,
    study: str,
    arm: str,
    seed: int,
    metrics: dict[str, float] | None,
    artifacts: list[Path] = (),
    status: str = "FINISHED",
    error: str = "",
    params: dict[str, str] | None = None,
) -> str:
    tags = {"kind": "job", MLFLOW_PARENT_RUN_ID: parent, "ab": study, "arm": arm, "seed": str(seed)}
    tags |= {"error": error} if error else {"complete": "1"}
    run_id = mlflow.create_run(exp, tags=tags).info.run_id
    params = {"loss.scheme": arm, **(params or {})}
    logged = [Metric(k, v, 0, 0) for k, v in (metrics or {}).items()]
    logged += [Metric("train/loss", 2.0 / (step + 1) + 0.1 * seed, 0, step) for step in range(4)]
    logged += [Metric("val/mAP", 0.1 * step + 0.01 * seed, 0, step) for step in (1, 3)]
    mlflow.log_batch(run_id, metrics=logged, params=[Param(k, v) for k, v in params.items()])
    for path in artifacts:
        mlflow.log_artifact(run_id, str(path))
    mlflow.set_terminated(run_id, status)
    return run_id


def add_study(mlflow: MlflowClient, exp: str, study: str, arms: list[str], seeds: list[int], baseline: str) -> str:
    tags = {"kind": "study", "ab": study, "arms": ",".join(arms), "seeds": ",".join(map(str, seeds))}
    return mlflow.create_run(exp, tags={**tags, "baseline": baseline}).info.run_id


def fill_store(root: Path) -> dict:
    """The loss_fix study (4 arms x 3 seeds; vfl: seed 1 failed, seed 2 never ran) and a later PaQ study."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow = MlflowClient(tracking_uri=uri)
    exp = mlflow.create_experiment("sparse4d_lab", artifact_location=(root / "artifacts").as_uri())
    parent = add_study(mlflow, exp, "loss_fix", [BASE, FIX, SAME, FEW], [0, 1, 2], BASE)
    files = {inflated: job_artifacts(root / f"art-{inflated}", 0, inflated) for inflated in (True, False)}
    jobs = {}
    for arm in (BASE, FIX, SAME):
        for seed in range(3):
            art = files[arm != FIX]  # the buggy arms' query scores are inflated
            jobs[arm, seed] = add_job(mlflow, exp, parent, "loss_fix", arm, seed, metrics_of(arm, seed), art)
    jobs[FEW, 0] = add_job(mlflow, exp, parent, "loss_fix", FEW, 0, metrics_of(FEW, 0))  # no artifacts
    jobs[FEW, 1] = add_job(mlflow, exp, parent, "loss_fix", FEW, 1, None, status="FAILED", error="DivergedError: x")
    paq = add_study(mlflow, exp, "paq", [FIX, "paq_patterns", "paq"], [0, 1], FIX)
    flags = {FIX: ("False", "False"), "paq_patterns": ("True", "False"), "paq": ("True", "True")}
    paq_jobs = {}
    for i, (arm, (patterns, assignment)) in enumerate(flags.items()):
        params = {"loss.paq.patterns": patterns, "loss.paq.assignment": assignment}
        for seed in range(2):
            values = {"test/mAP": 0.40 + 0.01 * i + 0.002 * seed, "test/gini": 0.97 - 0.04 * i + 0.01 * seed}
            paq_jobs[arm, seed] = add_job(mlflow, exp, paq, "paq", arm, seed, values, params=params)
    mlflow.set_terminated(paq, "FINISHED")
    return {"uri": uri, "mlflow": mlflow, "exp": exp, "parent": parent, "jobs": jobs, "paq": paq, "paq_jobs": paq_jobs}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    return fill_store(tmp_path_factory.mktemp("store"))


def row(table: pd.DataFrame, arm: str, key: str) -> pd.Series:
    [found] = [r for _, r in table.iterrows() if r["arm"] == arm and r["metric"] == key]
    return found


# ----------------------------------------------------------------------------------------------------------------
# Statistics
# ----------------------------------------------------------------------------------------------------------------


def test_means_stds_and_paired_differences_equal_hand_computed_values(store):
    selection = select_study(store["mlflow"], store["parent"])
    assert selection.arms == [BASE, FIX, SAME, FEW] and selection.baseline == BASE
    table = comparison_table(selection.records, selection.arms, selection.baseline)

    fix = row(table, FIX, "test/mAP")
    assert fix["n"] == fix["runs"] == 3
    assert fix["mean"] == pytest.approx((0.35 + 0.36 + 0.40) / 3)
    assert fix["std"] == pytest.approx(math.sqrt(((0.35 - 0.37) ** 2 + (0.36 - 0.37) ** 2 + (0.40 - 0.37) ** 2) / 2))
    # Paired by seed: d = (0.05, 0.04, 0.06), mean 0.05, sd 0.01; t interval with 2 degrees of freedom.
    d_mean, d_sd, n = 0.05, 0.01, 3
    half = stats.t.ppf(0.975, n - 1) * d_sd / math.sqrt(n)
    assert fix["diff"] == pytest.approx(d_mean)
    assert (fix["ci_low"], fix["ci_high"]) == pytest.approx((d_mean - half, d_mean + half))
    t_stat = d_mean / (d_sd / math.sqrt(n))
    assert fix["p_value"] == pytest.approx(2 * stats.t.sf(t_stat, n - 1))
    assert fix["p_value"] == pytest.approx(stats.ttest_rel(MAP[FIX], MAP[BASE]).pvalue)

    fp = row(table, FIX, "test/hc_fp_per_frame")  # lower is better: the fixed arm is best and bold
    assert fp["diff"] == pytest.approx(np.mean([1.0 - 5.0, 1.5 - 6.0, 1.0 - 7.0])) and fp["best"]
    assert not row(table, BASE, "test/hc_fp_per_frame")["best"] and row(table, FIX, "test/mAP")["best"]

    assert not any(
        row(comparison_table(selection.records, [BASE, SAME], BASE), arm, "test/mAP")["best"] for arm in (BASE, SAME)
    )

    hota = row(table, FIX, "test/HOTA")  # one run lacks the metric: 2 values, 2 pairs
    assert (hota["n"], hota["n_pairs"], hota["runs"]) == (2, 2, 3)
    # Its mean (1.55) is the highest, but over 2 of 3 seeds: the complete cells (1.1, 1.1, 1.0) compete for bold.
    assert not hota["best"] and row(table, BASE, "test/HOTA")["best"] and not row(table, FEW, "test/HOTA")["best"]


def test_identical_arms_have_p_one_and_a_zero_interval(store):
    selection = select_study(store["mlflow"], store["parent"])
    table = comparison_table(selection.records, selection.arms, selection.baseline)
    same = row(table, SAME, "test/mAP")
    assert (same["diff"], same["ci_low"], same["ci_high"], same["p_value"]) == (0.0, 0.0, 0.0, 1.0)
    assert math.isnan(row(table, BASE, "test/mAP")["diff"])  # the baseline has no difference to itself


def test_fewer_than_two_pairs_give_undefined_ci_and_p(store):
    selection = select_study(store["mlflow"], store["parent"])
    table = comparison_table(selection.records, selection.arms, selection.baseline)
    few = row(table, FEW, "test/mAP")
    assert few["n"] == 1 and math.isnan(few["std"]) and few["diff"] == pytest.approx(0.20 - 0.30)
    assert math.isnan(few["ci_low"]) and math.isnan(few["p_value"])
    assert paired_difference({}, {0: 1.0}).n == 0
    constant = paired_difference({0: 2.0, 1: 3.0}, {0: 1.0, 1: 2.0})  # every difference is 1: t = inf
    assert (constant.mean, constant.ci_low, constant.ci_high, constant.p_value) == (1.0, 1.0, 1.0, 0.0)


def test_duplicate_runs_of_one_seed_count_once_and_are_named():
    records = [
        RunRecord(BASE, 0, "FINISHED", {"test/mAP": 0.1}, run_id="old", end_time=1),
        RunRecord(BASE, 0, "FINISHED", {"test/mAP": 0.3}, run_id="new", end_time=2),
        RunRecord(BASE, 1, "KILLED", {}, run_id="k", end_time=3),
    ]
    cells, notes = usable_runs(records)
    assert cells[BASE][0].run_id == "new" and notes == [f"{BASE} seed 0: run old superseded by the later run new"]
    assert row(comparison_table(records, [BASE], BASE), BASE, "test/mAP")["mean"] == pytest.approx(0.3)
    assert missing_runs(records, [(BASE, 0), (BASE, 1), (BASE, 2)]) == [
        f"{BASE} seed 1: KILLED (run k)",
        f"{BASE} seed 2: no run",
    ]


# ----------------------------------------------------------------------------------------------------------------
# Formats and the end of a study
# ----------------------------------------------------------------------------------------------------------------


def test_a_long_report_is_cut_at_a_line_within_the_tag_limit_and_says_where_the_rest_is():
    lines = [f"| row {i} | {'x' * 50} |" for i in range(300)]
    markdown = "\n".join(lines)
    cut = report.run_description(markdown, limit=1000)
    assert len(cut) <= 1000 and cut.endswith("(continued in the artifact study_table.md)\n")
    kept = cut.split("\n\n(continued")[0].split("\n")
    assert kept == lines[: len(kept)] and len(cut) + len(lines[len(kept)]) + 1 > 1000  # whole lines, all that fit
    assert report.run_description("short") == "short"


def test_a_study_report_without_figures_writes_and_logs_the_tables_and_a_page_without_images(tmp_path):
    store = fill_store(tmp_path / "store")
    markdown = report.study_report(store["uri"], store["parent"], tmp_path / "out", figures=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "study_report.html",
        "study_table.csv",
        "study_table.md",
        "study_table.tex",
    ]
    assert "## Figures" not in markdown and "<img" not in (tmp_path / "out" / "study_report.html").read_text()
    mlflow = store["mlflow"]
    assert "figures" not in {a.path for a in mlflow.list_artifacts(store["parent"])}
    assert mlflow.get_run(store["parent"]).info.status == "FINISHED"


def test_study_report_writes_every_format_logs_them_and_closes_the_parent(store, tmp_path):
    mlflow = store["mlflow"]
    markdown = report.study_report(store["uri"], store["parent"], tmp_path)
    table_rows = [line for line in markdown.splitlines() if line.startswith("| ") and not line.startswith("| arm")]
    arm_rows = [r.split("|")[1].strip() for r in table_rows if not r.startswith("| Δ")]
    assert arm_rows == [BASE, FIX, SAME, FEW]  # one row per arm, baseline first
    assert [r.split("|")[1].strip() for r in table_rows if r.startswith("| Δ")] == [
        f"Δ {arm} - {BASE}" for arm in (FIX, SAME, FEW)
    ]
    fix_delta = next(r for r in table_rows if r.startswith(f"| Δ {FIX}")).split("|")
    p = stats.ttest_rel(MAP[FIX], MAP[BASE]).pvalue
    assert fix_delta[3].strip().startswith("+0.050 [") and f"p={p:.3f}" in fix_delta[3]
    assert "**0.370 ± 0.026**" in markdown  # best mAP in bold
    assert "p=1.000" in markdown and "[n/a] p n/a" in markdown
    assert f"- {FEW} seed 1: FAILED DivergedError: x (run {store['jobs'][FEW, 1]})" in markdown
    assert f"- {FEW} seed 2: no run" in markdown and "scipy.stats.ttest_rel" in markdown
    assert (tmp_path / "study_table.md").read_text() == markdown

    tidy = pd.read_csv(tmp_path / "study_table.csv")
    assert len(tidy) == 4 * len(METRICS) and {"mean", "std", "n", "diff", "ci_low", "ci_high", "p_value"} <= set(tidy)
    tex = (tmp_path / "study_table.tex").read_text()
    assert r"\toprule" in tex and r"focal\_onehot" in tex and r"\mathbf{0.370 \pm 0.026}" in tex
    assert not (tmp_path / "paq_table.tex").exists()  # no arm of loss_fix uses PaQ

    parent = mlflow.get_run(store["parent"])
    assert parent.info.status == "FINISHED" and parent.data.tags["missing_runs"] == "2"
    assert parent.data.tags["mlflow.note.content"] == markdown  # the run page's description
    logged = {a.path for a in mlflow.list_artifacts(store["parent"])}
    assert {"study_table.md", "study_table.csv", "study_table.tex", "figures"} <= logged
    figures = sorted((tmp_path / "figures").iterdir())
    assert [p.stem for p in figures[::2]] == sorted(FIGURES) and all(p.stat().st_size > 1000 for p in figures)
    assert {p.suffix for p in figures} == {".png", ".pdf"} and len(figures) == 2 * len(FIGURES)
    assert len(mlflow.list_artifacts(store["parent"], "figures")) == len(figures)
    assert "[score_distributions](figures/score_distributions.png)" in markdown

    # One self-contained page: every figure inside it as a PNG, the tidy table at the CSV's precision.
    page = (tmp_path / "study_report.html").read_text()
    assert "study_report.html" in logged and 'src="figures/' not in page
    images = re.findall(r'<img alt="([\w.-]+)" src="data:image/png;base64,([^"]+)"', page)
    assert sorted(name for name, _ in images) == sorted(FIGURES)
    assert all(base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n") for _, data in images)
    with open(tmp_path / "study_table.csv", newline="") as f:
        assert tidy_cells(page) == list(csv.reader(f))


def test_the_report_page_renders_in_a_browser_with_every_image_and_the_csv_numbers(store, tmp_path, chromium):
    from playwright.sync_api import sync_playwright

    report.study_report(store["uri"], store["parent"], tmp_path)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium)
        page = browser.new_page()
        page.goto((tmp_path / "study_report.html").as_uri(), wait_until="load")
        heading = page.locator("h1").first.text_content()
        images = page.evaluate("[...document.images].map(i => [i.alt, i.complete && i.naturalWidth > 0])")
        rows = page.evaluate(
            "[...document.querySelectorAll('table.tidy tr')].map(r => [...r.cells].map(c => c.textContent.trim()))"
        )
        browser.close()
    assert heading.startswith("Study loss_fix")
    assert sorted(name for name, _ in images) == sorted(FIGURES) and all(loaded for _, loaded in images)
    with open(tmp_path / "study_table.csv", newline="") as f:
        assert rows == list(csv.reader(f))


class _Cells(HTMLParser):
    """The header and body rows of the page's table of class ``tidy``, as text."""

    def __init__(self):
        super().__init__()
        self.rows: list[list[str]] = []
        self.inside = self.cell = False

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.inside = "tidy" in (dict(attrs).get("class") or "").split()
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag in ("td", "th"):
            self.cell = True
            self.rows[-1].append("")

    def handle_endtag(self, tag):
        self.cell = self.cell and tag not in ("td", "th")
        self.inside = self.inside and tag != "table"

    def handle_data(self, data):
        if self.cell:
            self.rows[-1][-1] += data.strip()


def tidy_cells(page: str) -> list[list[str]]:
    parser = _Cells()
    parser.feed(page)
    return parser.rows


def test_latex_table_compiles(store, tmp_path):
    pdflatex = shutil.which("pdflatex")
    if pdflatex is None:
        pytest.skip("pdflatex is not installed")
    selection = select_study(store["mlflow"], store["parent"])
    table = comparison_table(selection.records, selection.arms, selection.baseline)
    notes = missing_runs(selection.records, selection.expected)
    (tmp_path / "table.tex").write_text(
        to_latex(table, selection.arms, BASE, "Study loss_fix", "loss_fix", notes, selection.records)
    )
    report.main(["--tracking-uri", store["uri"], "--ab", "paq", "--out", str(tmp_path / "paq"), "--no-figures"])
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\\usepackage{booktabs,amssymb,graphicx}\\begin{document}"
        "\\input{table.tex}\\input{paq/paq_table.tex}\\end{document}\n"
    )
    result = subprocess.run(
        [pdflatex, "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 0
    assert "Overfull \\hbox" not in (tmp_path / "doc.log").read_text()  # both tables fit the page


TAO_EVAL = {"eval.track_score": "class", "eval.track_min_score": "0.2"}


def test_the_note_names_the_tracking_rule_and_the_detections_the_runs_logged():
    params = {**TAO_EVAL, "model.num_output": "300", "model.score_threshold": "0.05"}
    records = [RunRecord(arm, seed, "FINISHED", {}, params=params) for arm in (BASE, FIX) for seed in (0, 1)]
    note = table_note(records)
    tracks = "IDSW, IDF1, HOTA: tracks = detections with an instance id and class score ≥ 0.2 (eval.track_score=class)."
    assert tracks in note
    assert "AMOTA, IDS@best-MOTA: the nuScenes devkit's over the same tracks, sweeping the output score;" in note
    assert "the decoder's TopK by class score, K = 300 (model.num_output), with class score ≥ 0.05 " in note
    assert "HC-FP: false positives with output score ≥ 0.5." in note
    assert "HC-FP(cls): false positives with class score ≥ 0.5" in note and "among every query" in note
    assert "FP/frame@0.3: false positives with output score ≥ 0.3" in note
    # The LaTeX caption carries the same note.
    assert r"class score $\geq$ 0.2 (eval.track\_score=class)" in to_latex(
        comparison_table(records, [BASE, FIX], BASE), [BASE, FIX], BASE, "Study", "study", [], records
    )


def test_the_note_lists_every_tracking_rule_when_runs_differ():
    records = [
        RunRecord(BASE, 0, "FINISHED", {}, params=TAO_EVAL),
        RunRecord(FIX, 0, "FINISHED", {}, params={"eval.track_min_score": "0.3"}),  # older than eval.track_score
        RunRecord(SAME, 0, "FINISHED", {}, params={"eval.track_score": "output", "eval.track_min_score": "0.3"}),
        RunRecord(FEW, 0, "FAILED", {}, params={"eval.track_score": "output", "eval.track_min_score": "0.5"}),
    ]
    note = table_note(records)
    assert (
        "tracks = detections with an instance id and, as the runs differ, class score ≥ 0.2 "
        f"(eval.track_score=class: {BASE}) or output score ≥ 0.3 (eval.track_score=output: {FIX}, {SAME})."
    ) in note
    assert "0.5" not in note.split("Detections:")[1]  # a failed run is in no mean
    assert "over the same tracks (class) or every detection with an instance id (output)" in note
    assert "K = model.num_output, with class score ≥ model.score_threshold." in note  # not logged: named only


# ----------------------------------------------------------------------------------------------------------------
# Command line: studies, ad-hoc comparisons, PaQ table, errors
# ----------------------------------------------------------------------------------------------------------------


def test_cli_defaults_to_the_latest_study_and_writes_the_paq_table(store, tmp_path, capsys):
    assert report.main(["--tracking-uri", store["uri"], "--out", str(tmp_path), "--no-figures"]) == 0
    markdown = (tmp_path / "study_table.md").read_text()
    assert markdown.startswith("# Study paq (baseline focal_onehot)")
    section = markdown.split("## PaQ ablation")[1].splitlines()
    paq_rows = [line.split("|")[1:4] for line in section if line.startswith("| ")][1:]
    assert [[c.strip() for c in r] for r in paq_rows] == [
        ["-", "-", FIX],
        ["✓", "-", "paq_patterns"],
        ["✓", "✓", "paq"],
    ]
    tex = (tmp_path / "paq_table.tex").read_text()
    assert r"$\checkmark$ & $\checkmark$ & paq &" in tex and r"\mathbf{0.895 \pm 0.007}" in tex  # best Gini
    printed = capsys.readouterr().out
    assert "PaQ ablation" in printed and "0.895 ± 0.007" in printed  # the tables went to the terminal too
    assert store["mlflow"].get_run(store["paq"]).data.tags["missing_runs"] == "0"


def test_cli_ad_hoc_comparisons_by_run_ids_and_by_query(store, tmp_path):
    jobs, paq_jobs = store["jobs"], store["paq_jobs"]
    ids = ",".join([jobs[FIX, 0], jobs[FIX, 1], jobs[BASE, 0], jobs[BASE, 1]])
    args = ["--tracking-uri", store["uri"], "--no-figures", "--baseline", BASE]
    report.main([*args, "--runs", ids, "--out", str(tmp_path / "ids")])
    markdown = (tmp_path / "ids" / "study_table.md").read_text()
    assert markdown.startswith("# Comparison compare-") and "(baseline focal_filtered)" in markdown
    assert [line.split("|")[1].strip() for line in markdown.splitlines() if line.startswith("| focal")] == [BASE, FIX]

    # Runs of two studies: one row per study and arm; no --baseline: the first arm found.
    report.main(
        ["--tracking-uri", store["uri"], "--no-figures", "--query", f"tags.arm = '{FIX}'", "--out", str(tmp_path / "q")]
    )
    table = pd.read_csv(tmp_path / "q" / "study_table.csv")
    assert set(table["arm"]) == {f"loss_fix/{FIX}", f"paq/{FIX}"}
    runs = table[table["metric"] == "test/mAP"].set_index("arm")["runs"]
    assert runs[f"loss_fix/{FIX}"] == 3 and runs[f"paq/{FIX}"] == 2
    assert paq_jobs[FIX, 0]  # the query reached the PaQ study's runs too


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ab", "nope"], "--ab 'nope': no study of that name"),
        (["--runs", "0123abcd"], "--runs: no run with id '0123abcd'"),
        (["--query", "tags.arm = 'nope'"], "--query \"tags.arm = 'nope'\" matched no job runs"),
        (["--query", "tags.arm === 1"], "is not a valid MLflow filter"),
        (["--ab", "loss_fix", "--baseline", "nope"], "--baseline 'nope' is none of the selected arms"),
        (["--experiment", "nope"], "--experiment 'nope': no such experiment"),
    ],
)
def test_bad_input_names_the_argument(store, tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        report.main(["--tracking-uri", store["uri"], "--out", str(tmp_path), *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("uri", ["sqlite:///{}/nope.db", "file://{}/mlruns", "{}/mlruns"])
def test_a_store_that_does_not_exist_is_named_and_not_created(tmp_path, capsys, uri):
    uri = uri.format(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        report.main(["--tracking-uri", uri, "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and "no MLflow store at" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_study_without_job_runs_is_an_error_for_the_cli_but_not_for_the_study_end(store, tmp_path):
    mlflow = store["mlflow"]
    parent = add_study(mlflow, mlflow.create_experiment("elsewhere"), "empty", [BASE], [0], BASE)
    with pytest.raises(ReportInputError, match="has no job runs yet"):
        report.select(mlflow, report.build_parser().parse_args(["--parent", parent]))
    markdown = report.study_report(store["uri"], parent, tmp_path)
    assert f"- {BASE} seed 0: no run" in markdown and mlflow.get_run(parent).info.status == "FINISHED"
