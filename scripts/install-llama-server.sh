#!/usr/bin/env bash
# Installs llama.cpp as a real OpenAI-compatible server, through PyPI `llama-cpp-python[server]`
# (pinned), into TOOLS_DIR/venv-llama (TOOLS_DIR: $PLASMA_TOOLS_DIR or ~/.cache/plasma/tools).
# pip compiles llama.cpp from source with the machine's g++ (4.5 minutes on 2 idle cores the
# first time); the built wheel is kept in WHEELS_DIR/llama-cpp-python-<cpu flags>/, so a venv
# made anew later installs in seconds. Prints nothing and does nothing when it is already there.
#
# The tests use it twice: the OpenAI-compatible adapter against a server no one here wrote, and
# the in-process tokenizer and model against llama.cpp's own.
#
# The build names the CPU's instruction sets instead of `-march=native`: llama.cpp's native
# build uses AMX tiles when the CPU lists them, and a virtual machine whose kernel does not
# grant them kills it with a protection fault on its first matrix multiply.
#
#   scripts/install-llama-server.sh
set -euo pipefail

VERSION=0.3.36
LLAMA_CPP=llama-cpp-python[server]==$VERSION

tools=${PLASMA_TOOLS_DIR:-$HOME/.cache/plasma/tools}
wheels=${PLASMA_WHEELS_DIR:-$HOME/.cache/plasma/wheels}
venv=$tools/venv-llama

flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
cmake_args=(-DGGML_NATIVE=OFF -DLLAMA_CURL=OFF)
tag=""
for pair in avx:AVX avx2:AVX2 fma:FMA f16c:F16C bmi2:BMI2 avx_vnni:AVX_VNNI \
  avx512f:AVX512 avx512vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16; do
  if [[ " $flags " == *" ${pair%%:*} "* ]]; then
    cmake_args+=("-DGGML_${pair##*:}=ON")
    tag+="-${pair%%:*}"
  else
    cmake_args+=("-DGGML_${pair##*:}=OFF")
  fi
done
stamp="$LLAMA_CPP$tag"

if [[ ! -f "$venv/.installed" || "$(cat "$venv/.installed")" != "$stamp" ]] ||
  ! "$venv/bin/python" -c 'import llama_cpp, llama_cpp.server' 2>/dev/null; then
  mkdir -p "$tools" "$wheels"
  # A venv restored from a cache onto another Python is made anew.
  if ! "$venv/bin/python" -c '' 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  built=$wheels/llama-cpp-python$tag
  if ! compgen -G "$built/llama_cpp_python-$VERSION-*.whl" >/dev/null; then
    echo "building llama-cpp-python $VERSION (compiles llama.cpp: ~5 min the first time)" >&2
    # Only llama.cpp compiles; its build tools (cmake, ninja, scikit-build-core) come as wheels.
    CMAKE_ARGS="${cmake_args[*]}" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
      "$venv/bin/python" -m pip wheel --quiet --disable-pip-version-check --no-cache-dir \
      --no-deps --no-binary=llama-cpp-python "llama-cpp-python==$VERSION" -w "$built.part"
    rm -rf "$built"
    mv "$built.part" "$built"
  fi
  echo "installing $LLAMA_CPP into $venv" >&2
  # The wheel built for these flags replaces any other build, then the server's dependencies.
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall \
    --no-deps "$built"/llama_cpp_python-$VERSION-*.whl
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: \
    --find-links "$built" "$LLAMA_CPP"
  echo "$stamp" >"$venv/.installed"
fi
