#!/usr/bin/env bash
# The tritlab Jupyter kernel under real Jupyter clients.
#
#   scripts/test-jupyter.sh
#
# Builds tritlab (release) unless TRITLAB_BIN names a binary; makes a Python virtual environment
# (target/jupyter-venv, kept between runs) with jupyter_client, nbclient and nbformat from PyPI;
# installs the kernelspec into a temporary prefix (found through JUPYTER_PATH); exports every
# shipped workbook to .ipynb unless EXPORTS names a folder that has them (scripts/run-workbooks.sh
# leaves them in target/workbook-exports); then runs scripts/test-jupyter.py: every notebook
# through nbclient, and a BlockingKernelClient through completion, inspection, is_complete,
# interrupt, restart and a forged signature. Exits non-zero if any check failed.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
target="${CARGO_TARGET_DIR:-$repo/target}"

# The workbooks use the bundled plugins.
if [[ ! -f "${TRITLAB_PLUGIN_DIR:-$target/plugins}/gay-tracer.wasm" ]]; then
    scripts/build-plugins.sh
fi

tritlab="${TRITLAB_BIN:-}"
if [[ -z "$tritlab" ]]; then
    cargo build --release --locked -p tritlab
    tritlab="$target/release/tritlab"
fi
[[ -x "$tritlab" ]] || { echo "no tritlab binary at $tritlab" >&2; exit 1; }
tritlab="$(cd "$(dirname "$tritlab")" && pwd)/$(basename "$tritlab")"

# Python with the Jupyter clients. Debian's python3 needs python3-venv for `-m venv`.
venv="$target/jupyter-venv"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import jupyter_client, nbclient, nbformat' 2>/dev/null; then
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
        echo "installing python3-venv" >&2
        sudo=""
        [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
    fi
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        jupyter_client nbclient nbformat
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# The kernelspec in a prefix of its own; JUPYTER_PATH makes the clients find it there.
"$tritlab" kernel install --prefix "$scratch/prefix"
export JUPYTER_PATH="$scratch/prefix/share/jupyter"
# Keep the clients' runtime files (connection files) out of the user's folders.
export JUPYTER_RUNTIME_DIR="$scratch/runtime"
export JUPYTER_PLATFORM_DIRS=1

# The notebooks: every shipped workbook's export.
exports="${EXPORTS:-$target/workbook-exports}"
notebooks=()
for book in workbooks/*.md; do
    head -n 1 "$book" | grep -q '^<!-- tritlab-workbook v[0-9]* -->' || continue
    name="$(basename "$book" .md)"
    notebook="$exports/$name.ipynb"
    if [[ ! -f "$notebook" ]]; then
        notebook="$scratch/$name.ipynb"
        "$tritlab" run "$book" --no-save --export "$notebook" >/dev/null
    fi
    notebooks+=("$notebook")
done

"$venv/bin/python" scripts/test-jupyter.py "$repo/workbooks" "${notebooks[@]}"
