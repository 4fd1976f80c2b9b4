"""The `pruneseek` command: one sub-command per module in :mod:`pruneseek.commands`.

User errors (:class:`~pruneseek.errors.PruneseekError`, bad arguments) print one line on stderr
and exit with status 2; an interrupt exits with 130 after the command has cleaned up.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from pruneseek import __version__
from pruneseek.commands import COMMANDS
from pruneseek.errors import PruneseekError

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
    except KeyboardInterrupt:
        print(f"pruneseek {args.command}: interrupted", file=sys.stderr)
        return 130
