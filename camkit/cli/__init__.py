"""The ``camkit`` command: ``demo``, ``explain``, ``bench`` and ``train``.

Every command is a module of this package with ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> exit code``; :data:`COMMANDS` lists them.  To add a command, write such a module and
add it to :data:`COMMANDS`: :func:`main` builds its parser and reports its errors.

User errors (a missing file, an unknown layer, a bad option: :class:`camkit.errors.CamkitError`,
``FileNotFoundError``, an option the parser refuses) end with one ``camkit COMMAND: error: ...``
line on stderr and exit code 2, never a traceback; a run that failed for another reason
(:class:`camkit.errors.RunError`, a disk that filled up) exits with 1; an interrupt with 130.
``camkit COMMAND --help`` documents each command.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from camkit.cli import bench, demo, explain, train
from camkit.errors import CamkitError, RunError
from camkit.io import removed_if_failed

__all__ = ["main", "build_parser", "OneLineParser", "COMMANDS"]

COMMANDS = (demo, explain, bench, train)


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, ``PROG: error: MESSAGE``, and exit code 2
    (argparse's own adds the usage; ``--help`` still shows it)."""

    def error(self, message: str):
        """Print ``PROG: error: MESSAGE`` on stderr and exit with code 2."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``camkit`` parser with one sub-parser per command."""
    from camkit import __version__

    parser = OneLineParser(
        prog="camkit", description="Class activation maps and weakly-supervised localization for PyTorch CNNs.")
    parser.add_argument("--version", action="version", version=f"camkit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        sub = commands.add_parser(command.NAME, help=command.HELP)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run, interrupted=getattr(command, "interrupted", None))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``camkit ARGS`` (``argv`` defaults to the process's arguments); returns the exit code
    (``--help`` and ``--version`` exit through ``SystemExit(0)``, as argparse does)."""
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as stop:
        if not stop.code:
            raise
        return 2
    if unknown:  # said by the command they were given to, as its other errors are
        print(f"camkit{' ' + args.command if args.command else ''}: error: unrecognized arguments: "
              f"{' '.join(unknown)}", file=sys.stderr)
        return 2
    if args.command is None:
        parser.print_help()
        return 2
    prog = f"camkit {args.command}"
    speaks = int(os.environ.get("RANK", "0")) == 0  # under torchrun, one process reports
    try:
        with removed_if_failed():  # a command that fails leaves no empty --out folder behind
            return int(args.run(args) or 0)
    except KeyboardInterrupt:
        hint = f"; {args.interrupted(args)}" if args.interrupted else ""
        print(f"{prog}: interrupted{hint}", file=sys.stderr)
        return 130
    except RunError as error:
        if speaks:
            print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    except (CamkitError, FileNotFoundError) as error:
        if speaks:
            print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # e.g. the disk filled up: the run failed, the user's command was fine
        if speaks:
            print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
