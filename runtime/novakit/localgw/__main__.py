"""``python -m novakit.localgw``: see ``novakit.localgw.cli``."""

from .cli import main

raise SystemExit(main())
