"""Sub-commands of the voice fine-tuning: `train data`, `train llm`, `export llm`, `eval llm`, `ask`.

torch, transformers and peft (the `train` extra) are imported only inside `train llm` and
`export llm`; the evaluation and `ask` run on llama.cpp like the server.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from voice_pipeline.app.cli import train_targets

DEFAULT_PEFT_DIR = "build/voice_lora/peft"


def register(subparsers: argparse._SubParsersAction, evals: argparse._SubParsersAction) -> None:
    targets = train_targets(subparsers)
    targets.add_parser("llm-data", help="rebuild the training and held-out JSONL under models/voice_lora/data from their sources").set_defaults(run=_train_data)
    llm = targets.add_parser("llm", help="train the voice LoRA adapter (needs the `train` extra)")
    llm.add_argument("--out", default=DEFAULT_PEFT_DIR, help="folder for the adapter in peft format")
    llm.add_argument("--limit-steps", type=int, default=0, help="stop after this many steps (smoke test)")
    llm.add_argument("--epochs", type=int, help="passes over the training data (default: TrainConfig)")
    llm.add_argument("--learning-rate", type=float, help="peak learning rate (default: TrainConfig)")
    llm.add_argument("--threads", type=int, help="torch threads (default: TrainConfig)")
    llm.set_defaults(run=_train_llm)

    export = subparsers.add_parser("export", help="convert a trained adapter for llama.cpp")
    export_targets = export.add_subparsers(dest="export_target", required=True)
    export_llm = export_targets.add_parser("llm", help="peft adapter -> models/voice_lora/voice-lora-v2.gguf + MANIFEST.json")
    export_llm.add_argument("--peft", default=DEFAULT_PEFT_DIR, help="the folder `train llm` wrote")
    export_llm.add_argument("--out", help="write a candidate adapter here instead of the committed one")
    export_llm.set_defaults(run=_export_llm)

    evaluate = evals.add_parser("llm", help="base against tuned on the held-out and factual sets")
    evaluate.add_argument("--fast", action="store_true", help="the fixed small subset (the CI gate)")
    evaluate.add_argument("--json", action="store_true", help="print the results as JSON")
    evaluate.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    evaluate.add_argument("--write", action="store_true", help="store the results in models/voice_lora/EVAL.json")
    evaluate.add_argument("--adapter", help="a GGUF LoRA to evaluate instead of the committed one")
    evaluate.add_argument("--factual-set", choices=["factual", "factual_dev"], default="factual",
                          help="factual: the gate; factual_dev: for choosing between training runs")
    evaluate.set_defaults(run=_eval_llm)

    ask = subparsers.add_parser("ask", help="answer one prompt through the server's LLM engine, with timings")
    ask.add_argument("text")
    ask.add_argument("--model", choices=["base", "tuned"], default="tuned")
    ask.add_argument("--json", action="store_true")
    ask.add_argument("--config", help="TOML settings file")
    ask.set_defaults(run=_ask)



def _train_data(args: argparse.Namespace) -> int:
    from voice_pipeline.finetune import data

    splits = data.build()
    data.write(splits)
    print(json.dumps({name: len(rows) for name, rows in splits.items()}))
    return 0


def _train_llm(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from voice_pipeline.finetune.train import TrainConfig, train

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    overrides = {"epochs": args.epochs, "learning_rate": args.learning_rate, "threads": args.threads}
    config = replace(TrainConfig(), **{k: v for k, v in overrides.items() if v is not None})
    summary = train(Path(args.out), config, limit_steps=args.limit_steps)
    print(json.dumps(summary, indent=2))
    return 0


def _export_llm(args: argparse.Namespace) -> int:
    from voice_pipeline.finetune.export import export

    from voice_pipeline.finetune.export import ADAPTER_PATH

    print(json.dumps(export(Path(args.peft), Path(args.out) if args.out else ADAPTER_PATH), indent=2))
    return 0


def _eval_llm(args: argparse.Namespace) -> int:
    from voice_pipeline.finetune import evaluate

    evaluate.THREADS = args.threads
    if args.write and (args.adapter or args.factual_set != "factual"):
        print("eval llm: --write stores only the committed adapter on the gate's factual set", file=sys.stderr)
        return 2
    results = evaluate.run(args.fast, args.adapter or evaluate.ADAPTER_PATH, args.factual_set)
    if args.write:
        evaluate.store(results)
    print(json.dumps(results, indent=2) if args.json else evaluate.table(results))
    return 0


def _ask(args: argparse.Namespace) -> int:
    from voice_pipeline.finetune.ask import ask

    answer = ask(args.text, args.model, args.config)
    if args.json:
        print(json.dumps(answer))
    else:
        print(answer["reply"])
        print(f"ttft_ms={answer['ttft_ms']} t20_ms={answer['t20_ms']} tokens={answer['tokens']}")
    return 0
