#!/usr/bin/env bash
# Upstream llama.cpp, built once, for the scripts that compare tritlab with it
# (bench-vs-llamacpp.sh, test-llamacpp.sh).
#
#   scripts/llamacpp.sh            # build if needed, print what was built and where
#   source scripts/llamacpp.sh     # the same, and set the variables below in the calling shell
#
# llama.cpp comes from PyPI, the one registry this project reaches that carries it: the sdist of
# llama-cpp-python vendors a pinned llama.cpp (vendor/llama.cpp). Only that vendored tree is
# built, with CMake (Release, -march=native through GGML_NATIVE, shared libraries), and only the
# targets the scripts use: llama-bench, llama-completion (the one-shot generation tool; llama-cli
# is the interactive chat client in this version and needs the server), libllama and
# scripts/llamacpp-logits.c (next-token logits as JSON). A finished build is reused.
#
# Environment:
#   TRITLAB_LLAMACPP_DIR  cache directory (default target/llama.cpp)
#   TRITLAB_PY            virtual environment for the Python tools (default target/py): cmake,
#                         gguf and numpy from PyPI are installed into it
#   TRITLAB_JOBS          parallel compile jobs (default: the number of CPUs)
#
# Sets: LLAMACPP_VERSION (one line), LLAMACPP_SRC (the vendored llama.cpp), LLAMACPP_BUILD,
# LLAMACPP_BIN (its bin/: llama-bench, llama-completion, llamacpp-logits), LLAMACPP_LIB
# (libllama.so and libggml*.so), PY (the environment's python).

LLAMACPP_PYPI_VERSION=0.3.36
# From the sdist's CHANGELOG for 0.3.36 ("update llama.cpp to ggml-org/llama.cpp@0c1e57098").
LLAMACPP_COMMIT=0c1e57098

_llamacpp_main() {
  local root dir py jobs sdist src build
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  dir=${TRITLAB_LLAMACPP_DIR:-$root/target/llama.cpp}
  py=${TRITLAB_PY:-$root/target/py}
  jobs=${TRITLAB_JOBS:-$(nproc)}
  mkdir -p "$dir" || return 1
  dir=$(cd "$dir" && pwd)

  if [ ! -x "$py/bin/python" ]; then
    echo "llamacpp: creating the Python environment $py" >&2
    python3 -m venv "$py" || return 1
  fi
  if ! "$py/bin/python" -c "import gguf, numpy" 2>/dev/null || [ ! -x "$py/bin/cmake" ]; then
    echo "llamacpp: installing cmake, gguf and numpy from PyPI into $py" >&2
    "$py/bin/pip" install --quiet cmake gguf numpy || return 1
  fi
  PY=$py/bin/python

  src=$dir/llama_cpp_python-$LLAMACPP_PYPI_VERSION
  if [ ! -f "$src/vendor/llama.cpp/CMakeLists.txt" ]; then
    sdist=$dir/llama_cpp_python-$LLAMACPP_PYPI_VERSION.tar.gz
    if [ ! -f "$sdist" ]; then
      echo "llamacpp: downloading the llama-cpp-python $LLAMACPP_PYPI_VERSION sdist from PyPI" >&2
      # --no-binary only for this package: pip then prepares its metadata with wheels of
      # scikit-build-core and cmake instead of compiling CMake itself from source.
      "$py/bin/pip" download --quiet --no-deps --no-binary llama-cpp-python \
        --dest "$dir" "llama-cpp-python==$LLAMACPP_PYPI_VERSION" || return 1
    fi
    tar -xzf "$sdist" -C "$dir" || return 1
  fi
  LLAMACPP_SRC=$src/vendor/llama.cpp
  build=$dir/build
  LLAMACPP_BUILD=$build
  LLAMACPP_BIN=$build/bin
  LLAMACPP_LIB=$build/bin
  LLAMACPP_VERSION="llama.cpp ggml-org/llama.cpp@$LLAMACPP_COMMIT (vendored in llama-cpp-python $LLAMACPP_PYPI_VERSION from PyPI)"

  local want=(llama-bench llama-completion llamacpp-logits libllama.so)
  local missing=0 f
  for f in "${want[@]}"; do
    [ -e "$LLAMACPP_BIN/$f" ] || missing=1
  done
  if [ $missing = 1 ]; then
    echo "llamacpp: building $LLAMACPP_VERSION in $build ($jobs jobs; ten minutes or more on two cores)" >&2
    # The cache directory may sit inside tritlab's own checkout: keep llama.cpp's build-info
    # from asking git, which would report tritlab's commit as llama.cpp's.
    GIT_CEILING_DIRECTORIES=$src "$py/bin/cmake" -S "$LLAMACPP_SRC" -B "$build" \
      -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=ON \
      -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
      -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF >"$build.configure.log" 2>&1 || {
      tail -30 "$build.configure.log" >&2
      return 1
    }
    "$py/bin/cmake" --build "$build" --config Release -j "$jobs" \
      --target llama llama-bench llama-completion >"$build.log" 2>&1 || {
      tail -40 "$build.log" >&2
      return 1
    }
    cc -O2 -Wall -Wextra -o "$LLAMACPP_BIN/llamacpp-logits" "$root/scripts/llamacpp-logits.c" \
      -I "$LLAMACPP_SRC/include" -I "$LLAMACPP_SRC/ggml/include" \
      -L "$LLAMACPP_LIB" -lllama -Wl,-rpath,"$LLAMACPP_LIB" || return 1
  fi
  if [ ! -e "$LLAMACPP_LIB/libllama.so" ]; then
    echo "llamacpp: the build has no $LLAMACPP_LIB/libllama.so" >&2
    return 1
  fi
  echo "llamacpp: $LLAMACPP_VERSION" >&2
  echo "llamacpp: tools in $LLAMACPP_BIN" >&2
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  _llamacpp_main
  echo "$LLAMACPP_BIN"
else
  _llamacpp_main || return 1
fi
