"""The `meshspec` console script and `python -m meshspec`: a tiny, import-light wrapper.

It imports `meshspec.cli` (and with it Hypothesis, z3, ...) inside its own try block, so
that Ctrl-C at any moment, even during the first second of imports, ends with
`meshspec: interrupted` and exit 130, and output cut short by a closed pipe
(`meshspec list | head -1`) ends quietly with exit 0, never with a traceback. It imports
nothing beyond `os` and `sys` (already loaded at interpreter start) to keep the window
before its try block as short as possible.
"""
from __future__ import annotations

import os
import sys

INTERRUPTED_EXIT = 130


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; turn KeyboardInterrupt and BrokenPipeError into quiet exits."""
    try:
        from meshspec.cli import main as cli_main

        code = cli_main(argv)
        sys.stdout.flush()  # a closed pipe shows up here, not at interpreter exit
        return code
    except KeyboardInterrupt:
        print("meshspec: interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT
    except BrokenPipeError:
        silence_stdout()
        return 0


def silence_stdout() -> None:
    """Point stdout at /dev/null so that the final flush at exit cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def run() -> None:
    """Entry point of the console script: exit with `main()`'s code."""
    sys.exit(main())
