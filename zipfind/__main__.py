"""`python -m zipfind ...` is the `zipfind` command."""

from .cli import app

app(prog_name="zipfind")
