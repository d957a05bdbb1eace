"""The `lsvcr` command line: thin typer commands that parse options, call one package function and
render the result. Bad input raises a package ``InputError`` and exits with code 2 and one line."""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from abtest.errors import InputError as AbtestInputError
from lsvcr.errors import InputError as LsvcrInputError
from simulator.errors import InputError as SimulatorInputError

INPUT_ERRORS = (SimulatorInputError, AbtestInputError, LsvcrInputError)

app = typer.Typer(
    help="LSVCR toolkit: train the LLM-enhanced joint video & comment recommender, simulate a "
    "short-video platform with comment sections, and decide with A/B statistics whether it beats "
    "today's recommender.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Build and import datasets in the LSVCR layout.", no_args_is_help=True)
abtest_app = typer.Typer(help="Run and analyse A/B experiments; compare policies offline.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(abtest_app, name="abtest")

console = Console()
err_console = Console(stderr=True)


def fail(message: str) -> None:
    """Print one clear line and exit with code 2 (bad input)."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def handles_input_errors(fn):
    """Map a package ``InputError`` (and unreadable paths) to one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except INPUT_ERRORS as e:
            fail(str(e))
        except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as e:
            fail(f"{e.strerror or type(e).__name__}: {e.filename}")

    return wrapper


# --------------------------------------------------------------------------------------------
# lsvcr simulate
# --------------------------------------------------------------------------------------------
# (added by the simulator)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
