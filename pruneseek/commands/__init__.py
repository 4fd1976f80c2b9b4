"""Sub-commands of the `pruneseek` CLI. Each module offers ``add_parser(subparsers)``, which sets ``run``."""
from pruneseek.commands import (
    bench,
    compare,
    evaluate,
    export,
    landscape,
    retrain,
    search,
    space,
    teacher,
    tune,
    upscale,
)

COMMANDS = [search, compare, tune, space, teacher, bench, landscape, export, evaluate, upscale, retrain]
