"""``python -m batch``: the refresh pass (and rollback) without the streamsim CLI."""

import sys

from batch.cli import main

sys.exit(main())
