"""Study reports from MLflow: ``python -m analysis.report --ab loss_fix`` (the latest study of that name).

Reads MLflow only. Writes ``study_table.md`` and ``study_table.csv``, prints the table and logs both to the study's
parent run; runs that are missing or did not finish are listed under the table, never averaged away.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mlflow import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from rich.console import Console
from rich.markdown import Markdown

from .table import RunRecord, missing_runs, summary_table, to_markdown


def run_records(mlflow: MlflowClient, experiment_id: str, parent_id: str) -> list[RunRecord]:
    runs = mlflow.search_runs([experiment_id], f"tags.{MLFLOW_PARENT_RUN_ID} = '{parent_id}'", max_results=10000)
    return [
        RunRecord(
            arm=r.data.tags.get("arm", "?"),
            seed=int(r.data.tags.get("seed", -1)),
            status=r.info.status,
            metrics=dict(r.data.metrics),
            error=r.data.tags.get("error", ""),
        )
        for r in runs
    ]


def study_report(uri: str, experiment: str, parent_id: str, out_dir: Path) -> str:
    """Build, print, save and log the table of one study; returns the Markdown."""
    mlflow = MlflowClient(tracking_uri=uri)
    parent = mlflow.get_run(parent_id)
    tags = parent.data.tags
    arms = [a for a in tags.get("arms", "").split(",") if a]
    seeds = [int(s) for s in tags.get("seeds", "").split(",") if s]
    baseline = tags.get("baseline")
    records = run_records(mlflow, parent.info.experiment_id, parent_id)
    arms = arms or sorted({r.arm for r in records})
    table = summary_table(records, arms, baseline)
    missing = missing_runs(records, arms, seeds or sorted({r.seed for r in records}))
    markdown = f"# Study {tags.get('ab', '?')} (baseline {baseline})\n\n{to_markdown(table)}\n"
    if missing:
        markdown += "\nMissing or unfinished runs (not in the means):\n" + "".join(f"- {m}\n" for m in missing)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "study_table.md").write_text(markdown)
    table.to_csv(out_dir / "study_table.csv", index=False)
    Console().print(Markdown(markdown))
    for name in ("study_table.md", "study_table.csv"):
        mlflow.log_artifact(parent_id, str(out_dir / name))
    mlflow.set_tag(parent_id, "missing_runs", str(len(missing)))
    mlflow.set_terminated(parent_id, "FINISHED")
    return markdown


def latest_study(mlflow: MlflowClient, experiment_id: str, study: str) -> str:
    runs = mlflow.search_runs(
        [experiment_id], f"tags.kind = 'study' and tags.ab = '{study}'", order_by=["attributes.start_time DESC"]
    )
    if not runs:
        raise SystemExit(f"no study named {study!r} in this tracking store")
    return runs[0].info.run_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__)
    parser.add_argument("--ab", required=True, help="study name (its latest parent run is used)")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
    parser.add_argument("--experiment", default="sparse4d_lab")
    parser.add_argument("--out", default=None, help="folder for the table files (default reports/<study>)")
    args = parser.parse_args(argv)
    mlflow = MlflowClient(tracking_uri=args.tracking_uri)
    exp = mlflow.get_experiment_by_name(args.experiment)
    if exp is None:
        raise SystemExit(f"no experiment {args.experiment!r} at {args.tracking_uri}")
    parent = latest_study(mlflow, exp.experiment_id, args.ab)
    study_report(args.tracking_uri, args.experiment, parent, Path(args.out or f"reports/{args.ab}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
