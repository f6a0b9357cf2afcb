"""``python -m batch``: the refresh pass (and rollback, similar) without the streamsim CLI."""
import sys

from batch.cli import main

sys.exit(main())
