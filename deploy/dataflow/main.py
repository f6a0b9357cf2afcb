"""The fold's Flex Template entry point (``FLEX_TEMPLATE_PYTHON_PY_FILE``).

The template launcher runs ``python main.py --name=value ...`` with the template's
parameters (``metadata.json``: ``bigtable_instance``, ``table_prefix``, ``app_profile_id``,
``weights``, ``fold_shards``) mixed with Dataflow's own options (``--project``, ``--region``,
``--temp_location``, ``--sdk_container_image``, ``--job_name``, ...). This turns them
into ``python -m streaming``'s command line (the connection settings before ``--``,
every Beam option after it) and runs it unsupervised: the job is submitted, the
launcher exits, the job runs on. The project is installed in the image (launcher and
workers are one image), so no ``--setup_file`` is shipped.
"""

from __future__ import annotations

import argparse
import sys

from schemas.layout import DEFAULT_PREFIX
from streaming.cli import add_stream_arguments, run_stream
from streamsim.runtime.cli import component_main


def stream_argv(argv: list[str]) -> list[str]:
    """The launcher's arguments as ``python -m streaming``'s."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--project", required=True)
    parser.add_argument("--bigtable_instance", required=True)
    parser.add_argument("--table_prefix", default=DEFAULT_PREFIX)
    parser.add_argument("--app_profile_id", default="")
    known, beam_args = parser.parse_known_args(argv)
    if not any(arg == "--runner" or arg.startswith("--runner=") for arg in beam_args):
        beam_args = ["--runner=DataflowRunner", *beam_args]
    connection = ["--project", known.project, "--instance", known.bigtable_instance, "--prefix", known.table_prefix]
    if known.app_profile_id:
        connection += ["--app-profile-id", known.app_profile_id]
    return ["--no-supervise", *connection, "--", f"--project={known.project}", *beam_args]


def main(argv: list[str] | None = None) -> int:
    return component_main(
        "streamsim flex template",
        "Submit the streaming fold to Dataflow (the Flex Template launcher runs this).",
        add_stream_arguments,
        run_stream,
        stream_argv(sys.argv[1:] if argv is None else argv),
    )


if __name__ == "__main__":
    sys.exit(main())
