"""``python -m novakit.bridge``: the container's command (also ``novakit bridge``)."""

import sys

from .cli import main

sys.exit(main())
