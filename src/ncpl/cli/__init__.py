"""`ncpl` command line: the typer app, its commands registered from the modules beside, one error handler.

Commands parse options and print; the work is in the library. A library error (`ncpl.errors.NcplError`) reaching
the app is printed as `error: <message>` with exit code 2, whichever command raised it.
"""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from ncpl.cli import data, laws, models, use
from ncpl.cli.output import fail
from ncpl.errors import NcplError


class _ReportingGroup(TyperGroup):
    """The app's command group: turns a library error from any command (sub-apps included) into its message and
    exit code 2, under `ncpl`, `python -m ncpl.cli` and typer's CliRunner alike."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except NcplError as error:
            fail(str(error))


# rich_markup_mode=None: click's plain help, where a flag shows as `--flag` (typer's rich panels add `<bool>`)
app = typer.Typer(
    cls=_ReportingGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Predict pretraining loss from a run's full configuration.",
)
app.add_typer(data.data_app, name="data")
for command in (
    models.fit,
    models.train,
    models.ensemble,
    use.predict,
    use.score,
    use.tune,
    laws.transfer,
    laws.cpt,
    laws.extrapolate,
):
    app.command()(command)
app.command("eval")(models.eval_predictors)
