"""Other voice frameworks as peers of this pipeline in the benchmark, on the same models.

Each peer runs in its own virtual environment under the bench's cache (venv.py, pinned versions)
as a small driver script the bench talks to over a loopback WebSocket; its LLM is one shared
llama.cpp server (llm_server.py). `voice-pipeline bench --peers pipecat` runs the comparison
(run.py); the peers are also registered in systems.SYSTEMS, so `--baselines pipecat` works too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # systems.py imports this package to register the peers
    from voice_pipeline.bench.systems import BenchOptions, SystemSpec, SystemUnderTest

# name -> (description, turn taking, matched settings, voice LoRA)
PIPECAT_LINES = {
    "pipecat": ("stock Pipecat 1.14: Silero VAD + Smart Turn v3, faster-whisper defaults (beam 5), "
                "sentence aggregation, SmolLM2 without LoRA", "stock", False, False),
    "pipecat_matched": ("Pipecat with this pipeline's settings: 300 ms silence ends the turn (VAD 200 ms + "
                        "100 ms speech timeout), beam 1, same threads, max_tokens, temperature; no LoRA",
                        "silence", True, False),
    "pipecat_matched_lora": ("pipecat_matched with the voice LoRA, as this pipeline's default LLM",
                             "silence", True, True),
}
# Peer name on the command line -> the systems it brings.
PEER_GROUPS: dict[str, tuple[str, ...]] = {"pipecat": tuple(PIPECAT_LINES), "livekit": ()}
LIVEKIT_NOT_DONE = ("LiveKit Agents is not adapted yet: see docs/benchmarks.md, 'Peers: other frameworks'")


def make_peer(name: str, options: "BenchOptions", llm=None, progress=print) -> "SystemUnderTest":
    from voice_pipeline.bench.peers.pipecat_system import PipecatSystem, PipecatVariant

    description, turn, matched, lora = PIPECAT_LINES[name]
    return PipecatSystem(name, description, PipecatVariant(turn, matched, lora), options, llm=llm, progress=progress)


def peer_specs() -> list["SystemSpec"]:
    from voice_pipeline.bench.systems import SystemSpec

    return [SystemSpec(name, line[0], lambda options, name=name: make_peer(name, options))
            for name, line in PIPECAT_LINES.items()]
