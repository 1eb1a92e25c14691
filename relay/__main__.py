"""``python -m relay …`` is ``drift relay …`` (used to run relay processes in tests)."""

from relay.cli import main

raise SystemExit(main())
