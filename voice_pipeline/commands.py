"""The core sub-commands: serve and talk."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction, evals: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser("serve", help="load and warm every model, then serve the WebSocket API")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--config", help="TOML settings file")
    serve.set_defaults(run=_serve)


def _serve(args: argparse.Namespace) -> int:
    from .server import run_server

    return run_server(args)
