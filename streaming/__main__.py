"""``python -m streaming``: the streaming fold on its own (same flags as ``streamsim stream``)."""

import sys

from streaming.cli import add_stream_arguments, run_stream
from streamsim.runtime.cli import component_main

if __name__ == "__main__":
    sys.exit(
        component_main(
            "python -m streaming",
            "Fold clickstream events from Pub/Sub into Bigtable (Beam).",
            add_stream_arguments,
            run_stream,
        )
    )
