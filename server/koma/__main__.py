"""`python -m koma …` runs the same command line as the `koma` script."""

from koma.cli import main

raise SystemExit(main())
