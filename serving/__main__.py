"""``python -m serving``: the same as ``streamsim serve``."""

import sys

from serving.cli import add_arguments, run_serve
from streamsim.runtime.cli import component_main

if __name__ == "__main__":
    sys.exit(component_main("python -m serving", "Serve recommendations over HTTP.", add_arguments, run_serve))
