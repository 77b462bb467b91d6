"""`python -m ncpl.cli` (and `accelerate launch -m ncpl.cli`) runs the `ncpl` command."""

from ncpl.cli import app

app()
