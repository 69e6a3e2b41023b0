"""``sanad feedback export``: the Slack bot's 👍/👎 ratings as JSONL (see ``service.slack.feedback``).

Wired into the ``sanad`` CLI with ``app.add_typer(feedback_app, name="feedback")``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

feedback_app = typer.Typer(help="Ratings given with the Slack bot's 👍/👎 buttons.", no_args_is_help=True)


@feedback_app.command("export")
def export(out: Annotated[Path | None, typer.Option("--out", help="JSONL file to write (default: stdout).")] = None,
           data_dir: Annotated[Path | None, typer.Option("--data-dir", help="State folder (default: SANAD_DATA_DIR "
                                                         "or ./data).")] = None) -> None:
    """Export every rating as a JSONL line with a ready gold item (facts left for a person to fill)."""
    from rag.settings import Settings
    from service.slack.feedback import export_feedback

    settings = Settings(data_dir=data_dir) if data_dir else Settings()
    if out is None:
        n = export_feedback(settings, sys.stdout)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8") as f:
            n = export_feedback(settings, f)
    typer.echo(f"{n} rating(s) exported" + (f" to {out}" if out else ""), err=True)
