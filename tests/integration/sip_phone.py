"""A real SIP phone for integration tests: Debian's baresip, driven without a terminal or a sound card.

How (found by running baresip 1.0.0 on 127.0.0.1):
- No registrar: the account line `<sip:caller@127.0.0.1>;regint=0` never registers; `-e "/dial URI"`
  (the `menu` module's command) places the call directly to the URI.
- Microphone: `audio_source aufile,FILE`; the file must be 16-bit mono at `ausrc_srate` (8 kHz
  here). When the file ends, baresip hangs up, so the input is padded with silence to the call's
  length: that is how the call lasts `seconds`.
- Recording: the `sndfile` audio filter writes `dump-<time>-dec.wav` (what the phone heard) and
  `-enc.wav` (what it sent) into `snd_path`. The `dec` file holds only the packets received, with
  no gaps for time without RTP; our RTP endpoint sends silence between replies, so there it keeps
  wall-clock time (to within a frame or two of the `enc` file's start).
- No sound card: `aubridge,nil` is the player (a sink nothing reads) and the alert device.
- `net_interface 127.0.0.1` (an address: the name `lo` is refused) keeps its SDP on 127.0.0.1.
- `-t` is a last-resort quit timer. baresip does not exit when a call ends, so the harness watches
  its output and sends SIGINT, which shuts it down cleanly and closes the WAV files.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voice_pipeline.audio import read_wav, resample, write_wav

PHONE_RATE_HZ = 8_000
BARESIP = "baresip"
MODULE_PATH = "/usr/lib/baresip/modules"
CALL_OVER_MARKERS = (b"terminated", b"Call failed", b"session closed")


@dataclass(frozen=True)
class BaresipCall:
    recording: Path  # what the phone heard, 8 kHz mono WAV
    sent: Path | None  # what the phone sent (its microphone after the codec's input filter)
    established: bool
    log: str


def _free_udp_port() -> int:
    """A port baresip can use whole: it binds UDP and TCP there, and its TLS transport the next one."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port < 65535 and all(_bindable(port + offset, kind) for offset in (0, 1)
                                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM)):
            return port
    raise RuntimeError("no free port pair for baresip on 127.0.0.1")


def _bindable(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def write_config(config_dir: Path, microphone_wav: Path, recordings_dir: Path, sip_port: int) -> None:
    config_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        ("poll_method", "epoll"),
        ("sip_listen", f"127.0.0.1:{sip_port}"),
        ("net_interface", "127.0.0.1"),
        ("call_local_timeout", "20"),
        ("audio_player", "aubridge,nil"),
        ("audio_alert", "aubridge,nil"),
        ("audio_source", f"aufile,{microphone_wav}"),
        ("ausrc_srate", str(PHONE_RATE_HZ)),
        ("auplay_srate", str(PHONE_RATE_HZ)),
        ("ausrc_channels", "1"),
        ("auplay_channels", "1"),
        ("audio_level", "no"),
        ("jitter_buffer_delay", "1-10"),
        ("module_path", MODULE_PATH),
        ("module", "g711.so"),
        ("module", "aufile.so"),
        ("module", "aubridge.so"),
        ("module", "sndfile.so"),
        ("module_tmp", "account.so"),
        ("module_app", "menu.so"),
        ("snd_path", str(recordings_dir)),
    ]
    (config_dir / "config").write_text("".join(f"{key}\t\t{value}\n" for key, value in lines))
    (config_dir / "accounts").write_text("<sip:caller@127.0.0.1>;regint=0;audio_codecs=PCMU\n")
    (config_dir / "contacts").write_text("")


def prepare_microphone(wav_in: Path, wav_out: Path, seconds: float) -> None:
    """The caller's speech at 8 kHz, padded with silence (or cut) to `seconds`."""
    audio, rate_hz = read_wav(wav_in)
    audio = resample(audio, rate_hz, PHONE_RATE_HZ)
    n_samples = int(seconds * PHONE_RATE_HZ)
    padded = np.zeros(n_samples, dtype=np.float32)
    padded[: min(n_samples, len(audio))] = audio[:n_samples]
    write_wav(wav_out, padded, PHONE_RATE_HZ)


async def _watch(process: asyncio.subprocess.Process, deadline_s: float) -> bytes:
    """Collect output until the call is over (then SIGINT) or the deadline passes (then kill)."""
    assert process.stdout is not None
    output = bytearray()
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    interrupted = False
    while True:
        try:
            chunk = await asyncio.wait_for(process.stdout.read(4096), max(0.1, end - loop.time()))
        except TimeoutError:
            chunk = None
        if chunk == b"":
            break  # baresip exited
        if chunk:
            output += chunk
        over = any(marker in output for marker in CALL_OVER_MARKERS)
        if (over or chunk is None) and not interrupted:
            process.send_signal(signal.SIGINT)
            interrupted = True
            end = loop.time() + 5.0
        elif chunk is None and interrupted:
            process.kill()
            break
    await process.wait()
    return bytes(output)


async def run_baresip_call(wav_in: str | Path, wav_out: str | Path, sip_uri: str, seconds: float,
                           workdir: str | Path) -> BaresipCall:
    """Call `sip_uri` from baresip, speak `wav_in`, hang up after `seconds`, save what it heard.

    The call ends earlier if the other side hangs up. Raises RuntimeError (with baresip's log)
    when no recording was made, e.g. because the call was never answered.
    """
    if shutil.which(BARESIP) is None:
        raise RuntimeError("baresip is not installed: run scripts/install-system-deps.sh")
    workdir = Path(workdir)
    config_dir, recordings = workdir / "baresip", workdir / "recordings"
    recordings.mkdir(parents=True, exist_ok=True)
    microphone = workdir / "microphone-8k.wav"
    prepare_microphone(Path(wav_in), microphone, seconds)
    write_config(config_dir, microphone, recordings, _free_udp_port())
    process = await asyncio.create_subprocess_exec(
        BARESIP, "-f", str(config_dir), "-e", f"/dial {sip_uri}", "-t", str(int(seconds) + 10),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    log = (await _watch(process, seconds + 15.0)).decode("utf-8", "replace")
    (workdir / "baresip.log").write_text(log)
    heard = sorted(recordings.glob("dump-*-dec.wav"))
    if not heard:
        raise RuntimeError(f"baresip made no recording; its log ends:\n{log[-3000:]}")
    shutil.copyfile(heard[-1], wav_out)
    sent = sorted(recordings.glob("dump-*-enc.wav"))
    return BaresipCall(Path(wav_out), sent[-1] if sent else None, "Call established" in log, log)
