#!/usr/bin/env bash
# Builds llama.cpp's C++ `llama-server` (parallel slots, continuous batching) from the sdist of the
# llama-cpp-python version installed in the venv, caches it, and prints its path (docs/scaling.md).
#
#   scripts/build-llama-server.sh [--cuda [--cuda-arch LIST]] [--portable] [--sdist FILE] [--check]
#
# Cache: ${XDG_CACHE_HOME:-~/.cache}/voice_pipeline/llama-server/<version>[-cuda[-smLIST]][-portable]/llama-server.
# A binary already there is printed at once (idempotent). --cuda builds with CUDA (needs nvcc);
# --cuda-arch builds for those GPU architectures only (e.g. 90 for an H100: a far shorter build,
# and one a machine without a GPU can do, where CMake cannot detect the architecture itself);
# --portable targets AVX2 instead of this CPU (a binary to carry to another machine); --sdist uses a
# tarball already on disk instead of fetching it from the package index (`pip download`, else PyPI's
# JSON API, sha256 checked; never a model hub); --check prints the path if the binary is cached and exits 1 if not.
# Only the llama-server and llama-export-lora targets are built, without the web UI, with -j the
# core count. Progress goes to stderr, the path alone to stdout.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON="$(command -v python3)"
CUDA=0 CUDA_ARCH="" PORTABLE=0 SDIST="" CHECK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --cuda) CUDA=1; shift ;;
    --cuda-arch) CUDA_ARCH="$2"; shift 2 ;;
    --portable) PORTABLE=1; shift ;;
    --sdist) SDIST="$2"; shift 2 ;;
    --check) CHECK=1; shift ;;
    *) echo "build-llama-server: unknown argument $1" >&2; exit 2 ;;
  esac
done
VERSION="$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("llama_cpp_python"))')"
VARIANT="$VERSION"
[ "$CUDA" = 1 ] && VARIANT+="-cuda"
[ "$CUDA" = 1 ] && [ -n "$CUDA_ARCH" ] && VARIANT+="-sm${CUDA_ARCH//;/-}"
[ "$PORTABLE" = 1 ] && VARIANT+="-portable"
DEST="${XDG_CACHE_HOME:-$HOME/.cache}/voice_pipeline/llama-server/$VARIANT"
# llama-export-lora beside it: `serve` merges the voice LoRA into the model's weights with it when
# the server runs on a GPU (engines/lora_merge.py)
if [ -x "$DEST/llama-server" ] && [ -x "$DEST/llama-export-lora" ]; then
  echo "$DEST/llama-server"
  exit 0
fi
[ "$CHECK" = 1 ] && { echo "build-llama-server: no llama-server $VARIANT in $DEST" >&2; exit 1; }
if [ "$CUDA" = 1 ] && ! command -v nvcc > /dev/null; then
  echo "build-llama-server: --cuda needs nvcc on PATH" >&2; exit 3
fi
for tool in cmake c++ make; do
  command -v "$tool" > /dev/null || { echo "build-llama-server: $tool not found (scripts/install-system-deps.sh)" >&2; exit 3; }
done

WORK="$(mktemp -d -t vp-llama-server-XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
if [ -z "$SDIST" ]; then
  echo "build-llama-server: fetching the llama-cpp-python $VERSION sdist from the package index" >&2
  mkdir -p "$WORK/sdist"
  if "$PYTHON" -m pip download --quiet --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -d "$WORK/sdist" >&2; then
    SDIST="$(echo "$WORK"/sdist/llama_cpp_python-*.tar.gz)"
  else  # no pip, or an index without the sdist: PyPI's JSON API, sha256 checked
    SDIST="$WORK/sdist/llama_cpp_python-$VERSION.tar.gz"
    "$PYTHON" - "$VERSION" "$SDIST" <<'EOF_PY'
import hashlib, json, sys, urllib.parse, urllib.request
version, target = sys.argv[1], sys.argv[2]
index = "https://pypi.org/pypi/llama-cpp-python/json"  # its file URLs may be relative to it
with urllib.request.urlopen(index, timeout=60) as r:
    files = json.load(r)["releases"][version]
sdist = next(f for f in files if f["packagetype"] == "sdist")
digest = hashlib.sha256()
with urllib.request.urlopen(urllib.parse.urljoin(index, sdist["url"]), timeout=600) as r, open(target, "wb") as out:
    while block := r.read(1 << 20):
        digest.update(block)
        out.write(block)
if digest.hexdigest() != sdist["digests"]["sha256"]:
    sys.exit(f"build-llama-server: sha256 mismatch for {sdist['filename']}")
EOF_PY
  fi
fi
echo "build-llama-server: unpacking $(basename "$SDIST")" >&2
tar -xzf "$SDIST" -C "$WORK" --wildcards '*/vendor/llama.cpp/*'
SRC="$(echo "$WORK"/llama_cpp_python-*/vendor/llama.cpp)"
[ -f "$SRC/tools/server/server.cpp" ] || { echo "build-llama-server: no tools/server in $SDIST" >&2; exit 1; }

# No web UI (LLAMA_USE_PREBUILT_UI would download it at build time), no tests or examples, no
# libcurl or OpenSSL (the pipeline talks to it over loopback HTTP), one static binary.
ARGS=(-DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
      -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF
      -DBUILD_SHARED_LIBS=OFF)
[ "$CUDA" = 1 ] && ARGS+=(-DGGML_CUDA=ON)
[ "$CUDA" = 1 ] && [ -n "$CUDA_ARCH" ] && ARGS+=("-DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCH")
RUN_ENV=()
if [ "$CUDA" = 1 ]; then
  # A toolkit without cuBLAS (nvcc from the package index has none): its headers and libraries come
  # from NVIDIA's nvidia-cublas wheel on the package index, for linking; at run time the GPU
  # machine's own libcublas.so.<major> is used.
  CUDA_MAJOR="$(nvcc --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')"
  TOOLKIT="${CUDA_HOME:-/usr/local/cuda}"
  if [ ! -f "$TOOLKIT/include/cublas_v2.h" ]; then
    WHEEL="nvidia-cublas"; [ "$CUDA_MAJOR" -le 12 ] && WHEEL="nvidia-cublas-cu$CUDA_MAJOR"
    echo "build-llama-server: $TOOLKIT has no cuBLAS; fetching $WHEEL for CUDA $CUDA_MAJOR from the package index" >&2
    "$PYTHON" -m pip download --quiet --no-deps "$WHEEL>=$CUDA_MAJOR,<$((CUDA_MAJOR + 1))" -d "$WORK/cublas" >&2
    "$PYTHON" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
      "$(echo "$WORK"/cublas/nvidia_cublas*.whl)" "$WORK/cublas"
    CUBLAS="$(dirname "$(dirname "$(find "$WORK/cublas" -name cublas_v2.h | head -1)")")"
    for lib in "$CUBLAS"/lib/libcublas*.so.*; do ln -sf "$(basename "$lib")" "${lib%.so.*}.so"; done
    ARGS+=("-DCMAKE_LIBRARY_PATH=$CUBLAS/lib" "-DCMAKE_CUDA_FLAGS=-I$CUBLAS/include" "-DCMAKE_CXX_FLAGS=-I$CUBLAS/include")
    RUN_ENV=("LD_LIBRARY_PATH=$CUBLAS/lib:${LD_LIBRARY_PATH:-}")
  fi
  # No driver library to link against (a machine without a GPU): build without CUDA's virtual
  # memory pool, the one feature that links libcuda directly.
  if ! ldconfig -p 2>/dev/null | grep -q 'libcuda\.so' && [ ! -e "$TOOLKIT/lib64/stubs/libcuda.so" ]; then
    ARGS+=(-DGGML_CUDA_NO_VMM=ON)
  fi
fi
[ "$PORTABLE" = 1 ] && ARGS+=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON)
echo "build-llama-server: building llama-server $VARIANT (several minutes; -j$(nproc))" >&2
cmake -S "$SRC" -B "$WORK/build" "${ARGS[@]}" > "$WORK/cmake.log" 2>&1 || { tail -30 "$WORK/cmake.log" >&2; exit 1; }
cmake --build "$WORK/build" --target llama-server llama-export-lora -j "$(nproc)" > "$WORK/build.log" 2>&1 \
  || { tail -30 "$WORK/build.log" >&2; exit 1; }
env "${RUN_ENV[@]}" "$WORK/build/bin/llama-server" --version > /dev/null 2>&1 || { echo "build-llama-server: the built binary does not run" >&2; exit 1; }
mkdir -p "$DEST"
for tool in llama-export-lora llama-server; do  # the server last: a cached server means both are there
  cp "$WORK/build/bin/$tool" "$DEST/$tool.tmp.$$"
  mv "$DEST/$tool.tmp.$$" "$DEST/$tool"  # atomic: a concurrent caller sees all or nothing
done
echo "$DEST/llama-server"
