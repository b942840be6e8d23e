"""The command line of the scripts: their argument dataclasses from the command line or from one .json file, and
their logging."""

from __future__ import annotations

import logging
import sys

import datasets
import transformers
from transformers import HfArgumentParser


def parse_args(dataclass_types, argv=None) -> tuple:
    """One instance of each of `dataclass_types`, in that order, from `argv` (default: `sys.argv[1:]`).

    A single argument ending in `.json` is read as a file of `{flag name: value}` (every key must belong to one of
    the dataclasses); anything else is parsed as command-line flags."""
    parser = HfArgumentParser(dataclass_types)
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(json_file=argv[0])
    return parser.parse_args_into_dataclasses(args=argv)


def setup_logging(training_args=None) -> None:
    """Timestamped INFO logging; transformers at the run's process log level (quieter on the other ranks of a
    distributed run), datasets at WARNING at most."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    level = training_args.get_process_log_level() if training_args is not None else logging.INFO
    transformers.utils.logging.set_verbosity(level)
    datasets.utils.logging.set_verbosity(min(level, logging.WARNING))
