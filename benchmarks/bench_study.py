"""Wall time of a whole study, the user's command, in a fresh folder; then the figures that show its effect.

Runs ``python -m experiments.run +ab=STUDY [overrides]`` in a temporary working directory (its own MLflow store
and checkpoints; the data cache is shared), then prints the wall time and, per arm, the mean +- std over seeds of
the high-confidence false positives per frame, mAP (and its one-class form), the tracking figures and the per-class
APs, unmatched scores and false positives, with a paired t-test of every arm against the baseline.
Usage: python benchmarks/bench_study.py [--ab loss_fix] [--keep DIR] [override ...]   (e.g. debug=smoke)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from mlflow import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from scipy import stats

from experiments.resources import describe_machine

ROOT = Path(__file__).parents[1]
SHOWN = (
    "test/hc_fp_per_frame",
    "test/hc_fp_cls_per_frame",
    "test/hc_unmatched_per_frame",
    "test/fp_per_frame_0.3",
    "test/unmatched_score_mean",
    "test/unmatched_score_worst",
    "test/mAP",
    "test/mAP_agnostic",
    "test/NDS",
    "test/IDF1",
    "test/HOTA",
    "test/id_switches",
    "test/spurious_tracks",
    "test/ids_best_mota",
    "test/gini",
    "train_time_s",
)


def per_arm(uri: str, study: str) -> tuple[str, dict[str, dict[int, dict[str, float]]]]:
    """(baseline, arm -> seed -> test metrics) of the latest study of that name in the store."""
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("sparse4d_lab").experiment_id
    [parent, *_] = client.search_runs([exp], f"tags.kind = 'study' and tags.ab = '{study}'")
    arms: dict[str, dict[int, dict[str, float]]] = {}
    for run in client.search_runs([exp], f"tags.{MLFLOW_PARENT_RUN_ID} = '{parent.info.run_id}'"):
        if run.info.status == "FINISHED":
            arms.setdefault(run.data.tags["arm"], {})[int(run.data.tags["seed"])] = run.data.metrics
    return parent.data.tags["baseline"], arms


def report(baseline: str, arms: dict[str, dict[int, dict[str, float]]]) -> None:
    base = arms.get(baseline, {})
    logged = {k for seeds in arms.values() for metrics in seeds.values() for k in metrics}
    per_class = sorted(
        k for k in logged if k.startswith(("test/AP/", "test/unmatched_score/", "test/hc_fp_cls_per_frame/"))
    )
    for key in [*SHOWN, *per_class]:
        print(f"\n{key}")
        for arm, seeds in sorted(arms.items(), key=lambda kv: kv[0] != baseline):
            values = np.array([seeds[s].get(key, np.nan) for s in sorted(seeds)])  # NaN: undefined in that seed
            spread = values.std(ddof=1) if len(values) > 1 else 0.0
            line = f"  {arm:16s} n={len(values)}  {values.mean():8.3f} +- {spread:.3f}"
            paired = sorted(set(seeds) & set(base))
            if arm != baseline and len(paired) > 1:
                mine = np.array([seeds[s].get(key, np.nan) for s in paired])
                theirs = np.array([base[s].get(key, np.nan) for s in paired])
                ratio = f"{theirs.mean() / mine.mean():.1f}x" if mine.mean() else "inf (arm mean 0)"
                p = stats.ttest_rel(theirs, mine).pvalue
                line += f"  diff {(mine - theirs).mean():+.3f}  baseline/arm {ratio}  paired t p={p:.2g}"
            print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ab", default="loss_fix")
    parser.add_argument("--keep", type=Path, default=None, help="working directory to use and keep")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    print(describe_machine())
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_study_"))
    work.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "experiments.run", f"+ab={args.ab}", *args.overrides]
    print("running", " ".join(command[1:]), "in", work, flush=True)
    start = time.perf_counter()
    subprocess.run(command, cwd=work, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    wall = time.perf_counter() - start
    print(f"\nstudy {args.ab} {' '.join(args.overrides)}: wall time {wall / 60:.1f} min")
    report(*per_arm(f"sqlite:///{work / 'mlflow.db'}", args.ab))
    return 0


if __name__ == "__main__":
    sys.exit(main())
