"""Sub-commands of the `pruneseek` CLI. Each module offers ``add_parser(subparsers)``, which sets ``run``."""
from pruneseek.commands import bench, compare, export, landscape, retrain, search, space, teacher, tune

COMMANDS = [search, compare, tune, space, teacher, bench, landscape, export, retrain]
