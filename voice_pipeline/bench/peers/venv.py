"""Each peer framework in its own virtual environment under the bench's cache, installed on demand.

The environment's folder is named after a hash of its pinned requirements and this interpreter's
version, so changing a pin makes a new one; it is used only once a marker written after a
successful install is there (an interrupted install is removed and done again). pip's own cache
(`~/.cache/pip`, or PIP_CACHE_DIR) keeps the wheels, so a fresh environment costs a download once.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from voice_pipeline.engines.registry import cache_dir

_MARKER = "voice-pipeline-peer.json"


@dataclass(frozen=True)
class PeerRequirements:
    name: str
    requirements: tuple[str, ...]  # what is asked for
    constraints: tuple[str, ...]  # every package pinned (pip freeze of a working install)

    def digest(self) -> str:
        text = json.dumps([self.requirements, self.constraints, sys.version_info[:2]])
        return hashlib.sha256(text.encode()).hexdigest()[:12]


# pip freeze of `pipecat-ai[whisper,piper]==1.14.0` on CPython 3.11, Linux x86_64.
PIPECAT = PeerRequirements("pipecat", ("pipecat-ai[whisper,piper]==1.14.0",), tuple("""
aiofiles==25.1.0 aiohappyeyeballs==2.7.1 aiohttp==3.14.5 aiosignal==1.4.0 annotated-types==0.8.0 anyio==4.16.0
attrs==26.1.0 av==18.1.0 certifi==2026.10.19.post1 cffi==2.1.1 charset-normalizer==3.5.3 click==8.5.1
ctranslate2==4.8.5 docopt==0.6.2 docstring_parser==0.18.0 faster-whisper==1.2.1 filelock==4.3.1
flatbuffers==25.12.19 frozenlist==1.8.0 fsspec==2026.9.0 h11==0.16.0 hf-xet==1.8.0 httpcore2==2.16.2
httpx2==2.16.2 huggingface_hub==2.4.0 idna==3.20 jiter==0.19.0 llvmlite==0.50.0 loguru==0.7.3 loudness==0.2.0
Markdown==3.11.3 multidict==7.2.1 num2words==0.5.14 numba==0.68.1 numpy==2.4.6 onnxruntime==1.32.0
openai==3.57.0 packaging==26.4 pathvalidate==3.3.1 pillow==13.0.0 pipecat-ai==1.14.0 piper-tts==1.8.0
propcache==0.5.4 protobuf==6.33.6 pycparser==3.12 pydantic==2.14.4 pydantic_core==2.50.5 python-dotenv==1.2.4
PyYAML==6.0.4 requests==2.34.2 resampy==0.4.3 sentencex==1.0.32 sniffio==1.3.1 soundfile==0.13.1 soxr==1.0.0
tokenizers==0.23.3 tqdm==4.70.1 truststore==0.10.5 typing-inspection==0.4.5 typing_extensions==4.16.0
urllib3==2.8.0 wait_for2==0.4.1 websockets==17.4 yarl==1.25.1
""".split()))

PEERS = {"pipecat": PIPECAT}


def venv_root() -> Path:
    return cache_dir() / "bench-peers"


def ensure_venv(peer: PeerRequirements, progress=print) -> tuple[Path, dict]:
    """The peer environment's python, installing it first if needed; and what that cost."""
    root = venv_root() / f"{peer.name}-{peer.digest()}"
    python = root / "bin" / "python"
    marker = root / _MARKER
    if marker.exists():
        return python, {**json.loads(marker.read_text()), "installed_now": False}
    if root.exists():
        shutil.rmtree(root)  # an install that did not finish
    progress(f"bench: installing {peer.name} into {root} ({', '.join(peer.requirements)})")
    started_t = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    constraints = root / "constraints.txt"
    constraints.write_text("\n".join(peer.constraints) + "\n")
    done = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                           "-c", str(constraints), *peer.requirements], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"installing {peer.name} failed: {done.stderr[-3000:]}")
    info = {"requirements": list(peer.requirements), "install_s": round(time.monotonic() - started_t, 1),
            "path": str(root)}
    marker.write_text(json.dumps(info))
    return python, {**info, "installed_now": True}
