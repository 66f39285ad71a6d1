"""Where the ONNX models (Piper, Silero VAD, Smart Turn) run: onnxruntime's CUDA provider or the CPU.

`device = "auto"` takes CUDA when the installed onnxruntime offers it (the `gpu` extra's
onnxruntime-gpu on a machine with CUDA), else the CPU; "cuda" insists on it; "cpu" never asks.
The CPU provider always follows CUDA's in the list, so a model with an operator CUDA lacks still
runs: onnxruntime places each node on the first provider that has it.
"""

from __future__ import annotations

from voice_pipeline.errors import ConfigError

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
DEVICES = ("auto", "cpu", "cuda")


def onnx_cuda_available() -> bool:
    import onnxruntime

    return CUDA in onnxruntime.get_available_providers()


def onnx_providers(device: str = "auto") -> list[str]:
    """onnxruntime's providers for `device`, in the order it should try them."""
    device = device.lower()
    if device not in DEVICES:
        raise ConfigError(f"an ONNX model's device must be one of {', '.join(DEVICES)}, not {device!r}")
    if device == "cpu":
        return [CPU]
    if onnx_cuda_available():
        return [CUDA, CPU]
    if device == "cuda":
        raise ConfigError("device = 'cuda' but this onnxruntime has no CUDA provider (install the gpu extra)")
    return [CPU]
