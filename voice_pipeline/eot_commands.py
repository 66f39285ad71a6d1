"""End-of-turn sub-commands: `train eot` (calibrate on train) and `eval eot` (held-out figures).

    voice-pipeline train eot [--json]           # fit calibration.json on train, rewrite EVAL.json
    voice-pipeline eval eot [--json] [--write]  # held-out precision, recall, false cut-offs, latency
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from voice_pipeline.app.cli import train_targets
from voice_pipeline.engines.text_eot import LlamaEndLogProb
from voice_pipeline.session.end_of_turn import (
    CALIBRATION_PATH,
    DATA_VERSION,
    EOT_DIR,
    Calibration,
    normalize,
)
from voice_pipeline.session.turn import TurnConfig, TurnTaking

EVAL_PATH = EOT_DIR / "EVAL.json"
THRESHOLD = 0.5  # above it the hint shortens the endpoint silence, below it lengthens it
LATENCY_UTTERANCES = 30


def register(subparsers: argparse._SubParsersAction, evals: argparse._SubParsersAction) -> None:
    evaluate = evals.add_parser("eot", help="semantic end-of-turn: precision, recall, false cut-offs on held-out")
    evaluate.add_argument("--json", action="store_true")
    evaluate.add_argument("--write", action="store_true", help="rewrite models/eot/EVAL.json")
    evaluate.set_defaults(run=_eval)
    train = train_targets(subparsers).add_parser("eot", help="calibrate the end-of-turn scorer on train")
    train.add_argument("--json", action="store_true")
    train.set_defaults(run=_train)
    turns = evals.add_parser("turn-taking", help="false cut-offs and endpoint wait on the pause corpus, per signal")
    turns.add_argument("--signals", default="silence,text,audio,audio+text", help="comma-separated: silence, text, "
                       "audio, audio+text (default: all four)")
    turns.add_argument("--split", default="all", choices=("all", "calibrate", "test"))
    turns.add_argument("--calibrate", type=float, metavar="MAX_CUT_OFF_RATE",
                       help="choose the thresholds on the calibrate split within this false cut-off rate")
    turns.add_argument("--json", action="store_true")
    turns.set_defaults(run=_turn_taking)


def _turn_taking(args: argparse.Namespace) -> int:
    from voice_pipeline.app.settings import Settings
    from voice_pipeline.bench.turn_report import ALL_SIGNALS, run, table
    from voice_pipeline.session.end_of_turn import AudioPolicy

    names = tuple(n for n in args.signals.split(",") if n)
    if unknown := [n for n in names if n not in ALL_SIGNALS]:
        print(f"eval turn-taking: unknown signals {unknown}; known: {', '.join(ALL_SIGNALS)}")
        return 2
    report = run(names, args.split, AudioPolicy.from_settings(Settings.load().vad), args.calibrate)
    report["command"] = "voice-pipeline eval turn-taking " + " ".join(
        f"--{k} {v}" for k, v in (("signals", args.signals), ("split", args.split), ("calibrate", args.calibrate)) if v)
    print(json.dumps(report, indent=2) if args.json else table(report))
    return 0


# -- data and scoring -----------------------------------------------------------------------------


def load_split(name: str, version: str = DATA_VERSION) -> list[dict]:
    path = EOT_DIR / "data" / version / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def score_rows(model, rows: list[dict]) -> list[float]:
    """Raw end log-probabilities, in alphabetical order so that a text reuses its prefix's KV cache."""
    order = sorted(range(len(rows)), key=lambda i: normalize(rows[i]["text"]))
    scores = [0.0] * len(rows)
    for i in order:
        scores[i] = model.end_log_prob(rows[i]["text"])
    return scores


def fit_logistic(xs: list[float], ys: list[bool], l2: float = 1e-3, steps: int = 50) -> tuple[float, float]:
    """Weight and bias of p = sigmoid(w * x + b) by Newton's method on the log-loss (tiny L2 on w)."""
    import numpy as np

    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    design = np.stack([x, np.ones_like(x)], axis=1)
    theta = np.zeros(2)
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(design @ theta)))
        grad = design.T @ (p - y) + l2 * np.array([theta[0], 0.0])
        hess = (design * (p * (1 - p))[:, None]).T @ design + l2 * np.diag([1.0, 0.0]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.abs(step).max() < 1e-10:
            break
    return float(theta[0]), float(theta[1])


def classification(probabilities: list[float], labels: list[bool], threshold: float = THRESHOLD) -> dict:
    """Counts and rates; "positive" means scored complete. A false cut-off is an incomplete one scored complete."""
    tp = sum(p >= threshold and y for p, y in zip(probabilities, labels))
    fp = sum(p >= threshold and not y for p, y in zip(probabilities, labels))
    fn = sum(p < threshold and y for p, y in zip(probabilities, labels))
    tn = len(labels) - tp - fp - fn
    return {
        "threshold": threshold, "n": len(labels), "complete": tp + fn, "incomplete": fp + tn,
        "true_complete": tp, "false_cutoffs": fp, "missed_complete": fn, "true_incomplete": tn,
        "precision": round(tp / (tp + fp), 4) if tp + fp else 0.0,
        "recall": round(tp / (tp + fn), 4) if tp + fn else 0.0,
        "false_cutoff_rate": round(fp / (fp + tn), 4) if fp + tn else 0.0,
    }


def endpoint_wait(probabilities: list[float], labels: list[bool], config: TurnConfig | None = None) -> dict:
    """Mean endpoint silence TurnTaking would wait after each utterance, with and without the hint."""
    config = config or TurnConfig()

    def silence_ms(p: float) -> float:
        turns = TurnTaking(config)
        turns.hint_end_of_turn(p)
        return turns.endpoint_silence_ms

    complete = [silence_ms(p) for p, y in zip(probabilities, labels) if y]
    incomplete = [silence_ms(p) for p, y in zip(probabilities, labels) if not y]
    return {
        "without_hint_ms": config.endpoint_silence_ms,
        "mean_complete_ms": round(statistics.fmean(complete), 1),
        "mean_incomplete_ms": round(statistics.fmean(incomplete), 1),
    }


def latency(model: LlamaEndLogProb, rows: list[dict], utterances: int = LATENCY_UTTERANCES) -> dict:
    """Per-call wall time: word-by-word partials (each extends the last) and whole utterances from scratch."""
    texts = [row["text"] for row in rows if row["complete"]][:utterances]
    extend_ms, fresh_ms = [], []
    for text in texts:
        words = text.split()
        model.forget()
        for end in range(1, len(words) + 1):
            extend_ms.append(_timed_ms(model, " ".join(words[:end])))
        model.forget()
        fresh_ms.append(_timed_ms(model, text))
    return {"partial_extends_previous": _summary(extend_ms), "whole_utterance_from_scratch": _summary(fresh_ms),
            "n_threads": model.n_threads}


def _timed_ms(model: LlamaEndLogProb, text: str) -> float:
    start = time.perf_counter()
    model.end_log_prob(text)
    return (time.perf_counter() - start) * 1000


def _summary(values_ms: list[float]) -> dict:
    ordered = sorted(values_ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"calls": len(ordered), "median_ms": round(statistics.median(ordered), 1), "p95_ms": round(p95, 1)}


# -- the two commands -----------------------------------------------------------------------------


def calibrate(model, path: Path = CALIBRATION_PATH) -> Calibration:
    rows = load_split("train")
    weight, bias = fit_logistic(score_rows(model, rows), [row["complete"] for row in rows])
    calibration = Calibration(weight=round(weight, 6), bias=round(bias, 6))
    calibration.save(path, feature="log P(<|im_end|> or . ? ! next | <|im_start|>user\\n{text})",
                     fitted_on=f"data/{DATA_VERSION}/train.jsonl ({len(rows)} rows)")
    return calibration


def evaluate_heldout(model, calibration: Calibration) -> dict:
    rows = load_split("heldout")
    labels = [row["complete"] for row in rows]
    probabilities = [calibration.probability(x) for x in score_rows(model, rows)]
    return {
        "data_version": DATA_VERSION, "calibration": {"weight": calibration.weight, "bias": calibration.bias},
        "heldout": classification(probabilities, labels), "endpoint_wait": endpoint_wait(probabilities, labels),
    }


def full_report(model: LlamaEndLogProb, calibration: Calibration) -> dict:
    report = evaluate_heldout(model, calibration)
    report["latency"] = latency(model, load_split("heldout"))
    report["command"] = "voice-pipeline eval eot --json"
    return report


def _train(args: argparse.Namespace) -> int:
    model = LlamaEndLogProb()
    report = full_report(model, calibrate(model))
    EVAL_PATH.write_text(json.dumps(report, indent=2) + "\n")
    _print_report(report, args.json)
    return 0


def _eval(args: argparse.Namespace) -> int:
    report = full_report(LlamaEndLogProb(), Calibration.load())
    if args.write:
        EVAL_PATH.write_text(json.dumps(report, indent=2) + "\n")
    _print_report(report, args.json)
    return 0


def _print_report(report: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=2))
        return
    h, wait, lat = report["heldout"], report["endpoint_wait"], report["latency"]
    print(f"end-of-turn data {report['data_version']}, held-out n={h['n']} ({h['complete']} complete), threshold {h['threshold']}")
    print(f"precision {h['precision']:.3f}  recall {h['recall']:.3f}  false cut-off rate {h['false_cutoff_rate']:.3f}"
          f" ({h['false_cutoffs']} of {h['incomplete']} incomplete scored complete)")
    print(f"endpoint silence: {wait['without_hint_ms']:.0f} ms without the hint; with it, complete"
          f" {wait['mean_complete_ms']:.0f} ms, incomplete {wait['mean_incomplete_ms']:.0f} ms (means)")
    for name, figures in (("partial extending the previous", lat["partial_extends_previous"]),
                          ("whole utterance from scratch", lat["whole_utterance_from_scratch"])):
        print(f"latency, {name}: median {figures['median_ms']} ms, p95 {figures['p95_ms']} ms ({figures['calls']} calls)")
