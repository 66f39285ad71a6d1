"""Router sub-commands: `route TEXT`, `eval router`, `train router`."""

from __future__ import annotations

import argparse
import json

from voice_pipeline.app.cli import train_targets


def register(subparsers: argparse._SubParsersAction, evals: argparse._SubParsersAction) -> None:
    route = subparsers.add_parser("route", help="route one utterance: instant | small | large")
    route.add_argument("text")
    route.add_argument("--json", action="store_true", help="print {\"route\", \"confidence\"}")
    route.set_defaults(run=_route)
    evaluate = evals.add_parser("router", help="router accuracy and confusion matrix on held-out data")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(run=_eval)
    train = train_targets(subparsers).add_parser("router", help="retrain the router, rewrite weights and EVAL.json")
    train.add_argument("--json", action="store_true")
    train.set_defaults(run=_train)



def _route(args: argparse.Namespace) -> int:
    from voice_pipeline.routing.model import Router

    decision = Router.load().route(args.text)
    if args.json:
        print(json.dumps({"route": decision.route.value, "confidence": round(decision.confidence, 4)}))
    else:
        print(f"{decision.route.value} ({decision.confidence:.2f})")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from voice_pipeline.routing.model import Router
    from voice_pipeline.routing.training import evaluate, load_split

    _print_report(evaluate(Router.load(), *load_split("heldout")), args.json)
    return 0


def _train(args: argparse.Namespace) -> int:
    from voice_pipeline.routing.training import train_and_save

    _print_report(train_and_save(), args.json)
    return 0


def _print_report(report: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=2))
        return
    print(f"router data {report['data_version']}, held-out n={report['n']}: accuracy {report['accuracy']:.4f}")
    labels = report["labels"]
    print("true \\ predicted " + " ".join(f"{label:>8}" for label in labels))
    for label, row in zip(labels, report["confusion_matrix"]):
        print(f"{label:>17} " + " ".join(f"{count:>8}" for count in row))
    for label, scores in report["per_class"].items():
        print(f"{label:>8}: precision {scores['precision']:.3f} recall {scores['recall']:.3f}")
