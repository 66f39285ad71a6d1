"""Running the pipeline, `eval llm` and `ask` never needs torch: only `train llm` and `export llm` do."""

from __future__ import annotations

import subprocess
import sys


def test_finetune_commands_import_without_torch():
    code = (
        "import sys; import voice_pipeline.app.cli as cli; cli.build_parser(); "
        "import voice_pipeline.finetune.evaluate, voice_pipeline.finetune.ask, voice_pipeline.finetune.export; "
        "heavy = sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules); print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_registers_the_finetune_commands():
    from voice_pipeline.app.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["eval", "llm", "--fast", "--json"]).fast
    assert parser.parse_args(["ask", "hello", "--model", "base"]).model == "base"
    assert parser.parse_args(["train", "llm", "--limit-steps", "2"]).limit_steps == 2
    assert parser.parse_args(["export", "llm"]).peft.endswith("peft")
