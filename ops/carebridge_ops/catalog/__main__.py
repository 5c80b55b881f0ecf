"""`python -m carebridge_ops.catalog`: the same commands as `carebridge catalog`."""

from carebridge_ops.catalog.cli import app

app(prog_name="python -m carebridge_ops.catalog")
