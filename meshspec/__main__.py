"""`python -m meshspec` is the `meshspec` command."""
import sys

from meshspec.cli import main

sys.exit(main())
