"""The core sub-commands: serve and talk."""

from __future__ import annotations

import argparse
import asyncio


def register(subparsers: argparse._SubParsersAction, evals: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser("serve", help="load and warm every model, then serve the WebSocket API")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8765)")
    serve.add_argument("--config", help="TOML settings file (VP_* environment variables override it)")
    serve.add_argument("--no-supervise", dest="supervise", action="store_false",
                       help="run the server in this process, with no supervisor to restart it after a crash")
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # started by the supervisor
    serve.set_defaults(run=_serve)

    talk = subparsers.add_parser("talk", help="speak a WAV file to the assistant and print its reply")
    talk.add_argument("input", help="WAV file with a spoken question (any sample rate)")
    talk.add_argument("--url", help="ws://HOST:PORT/v1/realtime of a running server (default: in-process)")
    talk.add_argument("--out", help="write the reply audio to this WAV file")
    talk.add_argument("--json", action="store_true", help="print one JSON object")
    talk.add_argument("--config", help="settings file for the in-process pipeline")
    talk.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the reply")
    talk.set_defaults(run=_talk)


def _serve(args: argparse.Namespace) -> int:
    """A supervisor that runs the server as a worker process (restarted after a crash), or the
    server itself: as that worker, or with --no-supervise / VP_SERVER_SUPERVISE=false."""
    from voice_pipeline.app.server import run_server
    from voice_pipeline.app.settings import Settings
    from voice_pipeline.app.supervisor import supervise

    if args.worker or not args.supervise or not Settings.load(args.config).server.supervise:
        return run_server(args)
    worker_args = [f"--{name}={value}" for name, value in (("host", args.host), ("port", args.port),
                                                           ("config", args.config)) if value is not None]
    return supervise(worker_args)


def _talk(args: argparse.Namespace) -> int:
    import logging

    from voice_pipeline_client.talk import run_talk

    logging.basicConfig(level=logging.WARNING)
    return asyncio.run(run_talk(args))
