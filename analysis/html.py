"""The report as one self-contained HTML page: the Markdown report rendered, every figure embedded (no file beside
it to lose), and the tidy table of ``study_table.csv`` at full precision. MLflow shows it in place as an artifact
of the study's parent run; it opens the same from a mail or a shared folder."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import markdown
import pandas as pd

FIGURE_LINK = re.compile(r"\[(?P<name>[\w.-]+)\]\((?P<path>figures/[\w.-]+\.png)\)(?: \(and \.pdf\))?")
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
figure { display: inline-block; margin: 0.5em; }
figure img { max-width: 560px; }
figcaption { text-align: center; font-size: 0.9em; }
"""


def embed_figures(text: str, out_dir: Path) -> str:
    """Each ``[name](figures/name.png)`` link of the Markdown report becomes the image itself, as a data URI."""

    def image(match: re.Match) -> str:
        data = base64.b64encode((out_dir / match["path"]).read_bytes()).decode()
        name = html.escape(match["name"])
        return f'<figure><img alt="{name}" src="data:image/png;base64,{data}"><figcaption>{name}</figcaption></figure>'

    return FIGURE_LINK.sub(image, text)


def to_html(report_markdown: str, tidy: pd.DataFrame, out_dir: Path, title: str) -> str:
    """The page of a report whose figures lie under ``out_dir / "figures"``."""
    body = markdown.markdown(embed_figures(report_markdown, out_dir), extensions=["tables"])
    cells = tidy.astype(object).map(lambda v: "" if pd.isna(v) else str(v))  # the CSV's text: shortest round trip
    data = cells.to_html(index=False, classes="tidy", border=0)
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
        f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n"
        f"<h2>Data (study_table.csv)</h2>\n{data}\n</body>\n</html>\n"
    )
