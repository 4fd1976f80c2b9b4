"""The `pruneseek` command: one sub-command per module in :mod:`pruneseek.commands`.

Exit statuses: 0 done; 2 the user can fix it — :class:`~pruneseek.errors.PruneseekError`, bad arguments,
and an output that cannot be written (disk full or over quota, read-only file system, permissions: an
``OSError`` with one of :data:`pruneseek.io.WRITE_ERRNOS`, or safetensors' report of one), each printed as one
line on stderr that names the path and the fix; 130 an interrupt, after the command has cleaned up. A command
whose finished results could not be written saves them elsewhere first and names that folder
(:func:`pruneseek.io.rescued`); every result file is written atomically, so a failed write leaves the previous
file or none. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from pruneseek import __version__
from pruneseek.commands import COMMANDS
from pruneseek.errors import PruneseekError
from pruneseek.io import as_write_error, write_error_text

EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (exit 2), pointing at --help."""

    def error(self, message: str):  # noqa: D401 - argparse's signature
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="pruneseek",
        description="Decide which transformer layers of a diffusion model to remove (depth pruning).",
    )
    parser.add_argument("--version", action="version", version=f"pruneseek {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for commands that relaunch themselves (--nproc)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.run(args) or 0)
    except PruneseekError as exc:
        print(f"pruneseek {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - only a failed write becomes one line; anything else propagates
        error = as_write_error(exc)
        if error is None:
            raise
        print(f"pruneseek {args.command}: error: {write_error_text(error)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"pruneseek {args.command}: interrupted", file=sys.stderr)
        return 130
