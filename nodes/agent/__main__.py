"""``python -m nodes.agent``: the agent without building the archive (development only)."""

import sys

from .cli import main

sys.exit(main())
