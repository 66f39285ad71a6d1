"""`voice-pipeline eval turn-taking`: the pause corpus through each end-of-turn signal, in one run.

Loads the models once, speaks the corpus, runs `turn_eval` for every signal asked for, and (with
`--calibrate`) records every pause's scores to choose the thresholds on the `calibrate` split.
"""

from __future__ import annotations

import time

from voice_pipeline.bench import pause_corpus
from voice_pipeline.bench.turn_eval import Outcome, Signals, evaluate
from voice_pipeline.session.end_of_turn import AudioPolicy

ALL_SIGNALS = ("silence", "text", "audio", "audio+text")
NEVER_EARLY = AudioPolicy(sure=2.0, unsure=2.0, wait_silence_ms=2500.0)  # records every pause


def load_signals(names: tuple[str, ...], policy: AudioPolicy, threads: int = 2,
                 clock_ms: dict[str, float] | None = None) -> Signals:
    from voice_pipeline.app.settings import SttSettings

    audio = stt = text = None
    if any("audio" in n for n in names):
        from voice_pipeline.engines.smart_turn import SmartTurnModel

        audio = SmartTurnModel(n_threads=threads)
    if any("text" in n for n in names):
        from voice_pipeline.engines.text_eot import EndOfTurnScorer
        from voice_pipeline.engines.whisper import WhisperStt

        stt, text = WhisperStt(SttSettings(cpu_threads=threads)), EndOfTurnScorer.load()
    return Signals(audio=audio, stt=stt, text=text, policy=policy, clock_ms=clock_ms)


def run(names: tuple[str, ...], split: str = "all", policy: AudioPolicy | None = None,
        calibrate_limit: float | None = None) -> dict:
    from voice_pipeline.bench.turn_calibrate import grid, score

    policy = policy or AudioPolicy()
    start = time.perf_counter()
    items = pause_corpus.load(split=split if calibrate_limit is None else "all")
    turns = pause_corpus.speak(items)
    report: dict = {"corpus": str(pause_corpus.PAUSE_CORPUS.name), "split": split, "turns": len(turns),
                    "policy": policy.__dict__, "synth_s": round(time.perf_counter() - start, 1)}
    signals = load_signals(names if calibrate_limit is None else ("audio+text",), policy)
    try:
        if calibrate_limit is not None:
            record = evaluate(turns, ("audio+text",), _with(signals, NEVER_EARLY))["items"]["audio+text"]
            rows = [Outcome(**o) for o in record]
            by_id = {t.item.item_id: t for t in turns}
            cal = [o for o in rows if o.split == "calibrate"]
            report["calibration"] = {}
            for name in ("audio", "audio+text"):
                chosen, figures = grid(cal, by_id, name, calibrate_limit, policy)
                test = score([o for o in rows if o.split == "test"], by_id, name, chosen)
                report["calibration"][name] = {"policy": chosen.__dict__, "calibrate": figures, "test": test}
        else:
            report.update(evaluate(turns, names, signals))
    finally:
        signals.close()
    report["wall_s"] = round(time.perf_counter() - start, 1)
    return report


def _with(signals: Signals, policy: AudioPolicy) -> Signals:
    signals.policy = policy
    return signals


def table(report: dict) -> str:
    lines = [f"pause corpus {report['corpus']}, split {report['split']}, {report['turns']} turns",
             "| signal | false cut-offs | paused turns cut | complete: endpoint p50 / p90 ms | all: endpoint p50 ms | model p50 ms |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, s in report.get("signals", {}).items():
        c, a, m = s["complete_endpoint_ms"], s["all_endpoint_ms"], s["model_ms"]
        lines.append(f"| {name} | {s['false_cutoffs']} of {s['items']} ({100 * s['false_cutoff_rate']:.1f} %) "
                     f"| {s['paused_cut_off']} of {s['paused_items']} | {c.get('p50', '-')} / {c.get('p90', '-')} "
                     f"| {a.get('p50', '-')} | {m.get('p50', '-')} |")
    for name, c in report.get("calibration", {}).items():
        lines.append(f"calibrated {name}: {c['policy']} -> calibrate {c['calibrate']}, test {c['test']}")
    return "\n".join(lines)
