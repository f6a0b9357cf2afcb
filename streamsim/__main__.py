"""``python -m streamsim``: the same as the ``streamsim`` command."""

import sys

from streamsim.app.cli import main

sys.exit(main())
