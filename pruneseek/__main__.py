"""`python -m pruneseek` is the same as the `pruneseek` command."""
from pruneseek.cli import main

raise SystemExit(main())
