# Shared by the scripts that test tritlab with real outside clients (test-jupyter.sh,
# test-server.sh) and by build-cuda.sh: sourced, not run.
#
#   plugins_built TARGET            build the bundled plugins unless TARGET/plugins has them
#   tritlab_bin TARGET              the absolute path of $TRITLAB_BIN, else of a release build
#   python_venv DIR IMPORTS PKG…    a virtual environment in DIR (kept between runs) where
#                                   `import IMPORTS` works, installing PKG… from PyPI if not

plugins_built() {
    if [[ ! -f "${TRITLAB_PLUGIN_DIR:-$1/plugins}/gay-tracer.wasm" ]]; then
        scripts/build-plugins.sh
    fi
}

tritlab_bin() {
    local bin="${TRITLAB_BIN:-}"
    if [[ -z "$bin" ]]; then
        cargo build --release --locked -p tritlab >&2
        bin="$1/release/tritlab"
    fi
    [[ -x "$bin" ]] || { echo "no tritlab binary at $bin" >&2; return 1; }
    echo "$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
}

python_venv() {
    local venv="$1" imports="$2"
    shift 2
    if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c "import $imports" 2>/dev/null; then
        return 0
    fi
    # Debian's python3 needs python3-venv for `-m venv`.
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
        echo "installing python3-venv" >&2
        local sudo=""
        [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
    fi
    rm -rf "$venv"
    python3 -m venv "$venv"
    if (($#)); then
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
    fi
}
