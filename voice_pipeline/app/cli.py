"""`voice-pipeline` command line: each feature module registers its own sub-commands."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable

# Modules that expose `register(subparsers, evals)`; each adds its own sub-commands.
COMMAND_MODULES = [
    "voice_pipeline.app.commands",
    "voice_pipeline.routing.commands",
    "voice_pipeline.bench.commands",
    "voice_pipeline.finetune.commands",
    "voice_pipeline.eot_commands",
]

EvalRunner = Callable[[argparse.Namespace], int]


def train_targets(subparsers: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """The `train` command's target sub-parsers, made by the first module that trains something."""
    parser = subparsers.choices.get("train")
    if parser is None:
        parser = subparsers.add_parser("train", help="train a model the project owns (router, llm, eot)")
        return parser.add_subparsers(dest="train_target", required=True)
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voice-pipeline", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    eval_parser = subparsers.add_parser("eval", help="run an evaluation set (router, llm, ...)")
    evals = eval_parser.add_subparsers(dest="eval_target", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers, evals)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
