"""The ``befa-viz`` command line (typer). Commands parse options and call one pipeline verb."""

from __future__ import annotations

import logging
import sys

import typer

from befa_viz.errors import BefaVizError

app = typer.Typer(
    name="befa-viz",
    help="Attribution heatmaps for multimedia recommenders with and without the BeFA adapter.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_state = {"verbose": False}


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging and tracebacks."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors."),
) -> None:
    _state["verbose"] = verbose
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s")


# ---- data commands ----------------------------------------------------------------------

# ---- encode command ---------------------------------------------------------------------

# ---- train / evaluate / compare / sweep commands -----------------------------------------

# ---- heatmap / report commands ----------------------------------------------------------

# ---- demo / benchmark commands ----------------------------------------------------------


def main() -> None:
    """Console entry point: a BefaVizError prints one line and exits 2."""
    try:
        app(standalone_mode=False)
    except BefaVizError as e:
        if _state["verbose"]:
            raise
        typer.secho(f"error: {e}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        sys.exit(1)
    except click_exceptions() as e:  # usage errors: typer/click format them
        e.show()
        sys.exit(e.exit_code)


def click_exceptions() -> tuple[type[Exception], ...]:
    import click

    return (click.ClickException,)
