"""`python -m igny8` is the `igny8` command."""

from igny8.cli import app

app(prog_name="igny8")
