"""`python -m microgpt` runs the command line."""

from microgpt.cli import main

raise SystemExit(main())
