"""Sub-commands of the `pruneseek` CLI. Each module offers ``add_parser(subparsers)``, which sets ``run``."""
from pruneseek.commands import bench, export, landscape, search, space, teacher

COMMANDS = [search, space, teacher, bench, landscape, export]
