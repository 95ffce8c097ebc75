"""`python -m meshspec` is the `meshspec` command (see meshspec.entry)."""
from meshspec.entry import run

run()
