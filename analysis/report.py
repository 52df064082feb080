"""Reports from MLflow: the ablation table (Markdown, LaTeX, CSV) and the figures of a study or of any runs.

    python -m analysis.report                          # the latest study
    python -m analysis.report --ab loss_fix            # the latest study of that name
    python -m analysis.report --parent RUN_ID          # one study, by its parent run
    python -m analysis.report --runs ID,ID,...         # ad-hoc: job runs (a study's parent run stands for its jobs)
    python -m analysis.report --query "tags.arm = 'paq'" [--baseline ARM]

Reads MLflow only. Writes under ``reports/<study>/`` (``--out``): ``study_table.md``, ``study_table.tex``,
``study_table.csv`` (tidy: one row per arm and metric), ``study_report.html`` (all of it, figures embedded, in one
page), ``primary_outcomes.tex`` and ``.csv`` when the study declares primary outcomes (``analysis.outcomes``),
``paq_table.tex`` when an arm uses PaQ, and ``figures/``;
prints the tables, and logs everything to the study's parent run. Runs that are missing or did not finish are
listed under the table, never averaged away.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE
from mlflow.utils.validation import MAX_TAG_VAL_LENGTH
from rich.console import Console, RenderableType
from rich.markdown import Markdown

from sparse4d_lab.locks import retry_while_locked

from .html import to_html
from .outcomes import outcome_notes, outcome_table, outcomes_latex, outcomes_markdown, outcomes_rich
from .runs import (
    Artifacts,
    ReportInputError,
    Selection,
    experiment_id,
    latest_study,
    select_query,
    select_run_ids,
    select_study,
)
from .table import (
    SPEC,
    comparison_table,
    missing_runs,
    paq_flags,
    paq_latex,
    paq_markdown,
    paq_rich,
    table_note,
    to_latex,
    to_markdown,
    to_rich,
    usable_runs,
)


@dataclass
class Report:
    """What a report wrote, and what it shows on a terminal."""

    markdown: str  # the whole report, as written to study_table.md
    terminal: list[RenderableType]  # the same for a terminal: the main table with metrics as rows
    files: list[Path]  # tables, then figures
    missing: list[str]

    def show(self) -> None:
        console = Console()
        for part in self.terminal:
            console.print(part)


def bullets(title: str, lines: list[str]) -> str:
    return f"\n{title}\n\n" + "".join(f"- {line}\n" for line in lines) if lines else ""


def write_report(mlflow: MlflowClient, selection: Selection, out_dir: Path, figures: bool = True) -> Report:
    """Tables (and figures) of a selection, written under ``out_dir``."""
    arms, baseline = selection.arms, selection.baseline
    table = comparison_table(selection.records, arms, baseline)
    cells, superseded = usable_runs(selection.records)
    missing = missing_runs(selection.records, selection.expected)
    title = f"{'Study' if selection.parent_id else 'Comparison'} {selection.title} (baseline {baseline})"
    heading = f"# {title}\n"
    notes = f"\n{table_note(selection.records)}\n" + bullets("Missing or unfinished runs (not in the means):", missing)
    notes += bullets("Runs left out (another run has the same arm and seed):", superseded)
    if selection.primary:
        titles = ", ".join(SPEC[m].title if m in SPEC else m for m in selection.primary)
        notes += (
            f"\nPrimary outcomes: {titles} (tested and corrected under Primary outcomes); the p-values above are "
            "uncorrected, and exploratory for every other metric.\n"
        )
    markdown = f"{heading}\n{to_markdown(table, arms, baseline)}\n{notes}"
    terminal: list[RenderableType] = [Markdown(heading), to_rich(table, arms, baseline), Markdown(notes)]
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [out_dir / "study_table.md", out_dir / "study_table.tex", out_dir / "study_table.csv"]
    files[1].write_text(to_latex(table, arms, baseline, title, selection.title, missing, selection.records))
    table.to_csv(files[2], index=False)
    flags = paq_flags(selection.records, arms)
    if flags:
        markdown += f"\n## PaQ ablation\n\n{paq_markdown(table, flags, baseline)}\n"
        terminal += [Markdown("## PaQ ablation"), paq_rich(table, flags, baseline)]
        files.append(out_dir / "paq_table.tex")
        files[-1].write_text(paq_latex(table, flags, baseline, selection.title))
    if selection.primary:
        outcomes = outcome_table(selection.records, arms, baseline, selection.primary)
        seeds = sorted({seed for _, seed in selection.expected})
        lines = outcome_notes(outcomes, selection.command or "python -m experiments.run", arms, seeds)
        markdown += f"\n## Primary outcomes\n\n{outcomes_markdown(outcomes, lines)}\n"
        terminal += [Markdown("## Primary outcomes"), outcomes_rich(outcomes), Markdown(bullets("", lines))]
        files += [out_dir / "primary_outcomes.tex", out_dir / "primary_outcomes.csv"]
        files[-2].write_text(
            outcomes_latex(outcomes, lines, f"{title}: primary outcomes", f"{selection.title}-primary")
        )
        outcomes.to_csv(files[-1], index=False)
    if figures:
        from .figures import draw_figures  # matplotlib, seaborn and torch: only when figures are drawn

        runs = [cells[arm][seed] for arm in arms for seed in sorted(cells.get(arm, {}))]
        with Artifacts(mlflow) as artifacts:
            drawn = draw_figures(runs, artifacts, out_dir / "figures", primary=selection.primary)
        links = bullets("## Figures", [f"[{p.stem}](figures/{p.name}) (and .pdf)" for p in drawn if p.suffix == ".png"])
        markdown += links
        terminal.append(Markdown(links))
        files += drawn
    files[0].write_text(markdown)
    files.append(out_dir / "study_report.html")
    files[-1].write_text(to_html(markdown, table, out_dir, title))
    return Report(markdown, terminal, files, missing)


def log_report(mlflow: MlflowClient, parent_id: str, report: Report, out_dir: Path) -> None:
    """Every file of the report as an artifact of the study's parent run (figures under ``figures/``)."""
    for path in report.files:
        folder = path.parent.relative_to(out_dir).as_posix()
        retry_while_locked(lambda p=path, f=folder: mlflow.log_artifact(parent_id, str(p), None if f == "." else f))
    retry_while_locked(lambda: mlflow.set_tag(parent_id, "missing_runs", str(len(report.missing))))
    note = run_description(report.markdown)
    retry_while_locked(lambda: mlflow.set_tag(parent_id, MLFLOW_RUN_NOTE, note))


def run_description(markdown: str, limit: int = MAX_TAG_VAL_LENGTH) -> str:
    """The report as the parent run's description (shown on its page), cut at a line within MLflow's tag limit."""
    if len(markdown) <= limit:
        return markdown
    tail = "\n\n(continued in the artifact study_table.md)\n"
    return markdown[: markdown.rfind("\n", 0, limit - len(tail))] + tail


def study_report(uri: str, parent_id: str, out_dir: Path, figures: bool = True) -> str:
    """End of a study: build, print, save and log its report, then close its parent run; returns the Markdown."""
    mlflow = MlflowClient(tracking_uri=uri)
    report = write_report(mlflow, select_study(mlflow, parent_id), out_dir, figures)
    report.show()
    log_report(mlflow, parent_id, report, out_dir)
    retry_while_locked(lambda: mlflow.set_terminated(parent_id, "FINISHED"))
    return report.markdown


def select(mlflow: MlflowClient, args: argparse.Namespace) -> Selection:
    """The selection the command line names (the latest study when it names none)."""
    if args.runs:
        return select_run_ids(mlflow, [i.strip() for i in args.runs.split(",") if i.strip()], args.baseline)
    if args.query:
        return select_query(mlflow, experiment_id(mlflow, args.experiment), args.query, args.baseline)
    parent = args.parent or latest_study(mlflow, experiment_id(mlflow, args.experiment), args.ab)
    selection = select_study(mlflow, parent, args.baseline)
    if not selection.records:
        raise ReportInputError(
            f"study {selection.title!r} (parent run {parent}) has no job runs yet; wait for its jobs, or pick "
            "another study with --parent RUN_ID"
        )
    return selection


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--ab", help="study name: its latest parent run (default: the latest study of any name)")
    which.add_argument("--parent", help="a study's parent run id")
    which.add_argument("--runs", help="comma-separated run ids (job runs, or study parent runs for all their jobs)")
    which.add_argument("--query", help="MLflow filter over job runs, e.g. \"tags.arm = 'paq'\"")
    parser.add_argument("--baseline", help="the arm the others are compared with (default: the study's, or the first)")
    parser.add_argument("--primary", help="comma-separated primary metric keys (default: the study file's)")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db")
    parser.add_argument("--experiment", default="sparse4d_lab")
    parser.add_argument("--out", default=None, help="output folder (default reports/<study or comparison>)")
    parser.add_argument("--no-figures", action="store_true", help="tables only")
    return parser


def missing_store(uri: str) -> Path | None:
    """The local file or folder a ``sqlite:///`` or ``file:`` URI (or a bare path) names, if it does not exist."""
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
    elif uri.startswith("file:"):
        path = Path(uri.removeprefix("file:").removeprefix("//"))
    elif "://" not in uri:
        path = Path(uri)
    else:
        return None
    return None if path.exists() else path


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    missing = missing_store(args.tracking_uri)
    if missing is not None:  # MLflow would create an empty store there and report that it holds no study
        parser.error(
            f"--tracking-uri {args.tracking_uri}: no MLflow store at {missing.resolve()}; point it at the store "
            "the study logged to (e.g. sqlite:////abs/path/mlflow.db, or the server's http:// address)"
        )
    mlflow = MlflowClient(tracking_uri=args.tracking_uri)
    try:
        selection = select(mlflow, args)
    except ReportInputError as err:
        parser.error(str(err))
    if args.primary is not None:
        selection.primary = [m.strip() for m in args.primary.split(",") if m.strip()]
    out_dir = Path(args.out or Path("reports") / selection.title)
    report = write_report(mlflow, selection, out_dir, figures=not args.no_figures)
    report.show()
    if selection.parent_id:
        log_report(mlflow, selection.parent_id, report, out_dir)
    Console().print(f"written to {out_dir}" + (f", logged to run {selection.parent_id}" if selection.parent_id else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
