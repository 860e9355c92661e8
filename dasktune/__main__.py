"""``python -m dasktune``: the same as the ``dasktune`` command."""

from dasktune.cli import main

raise SystemExit(main())
