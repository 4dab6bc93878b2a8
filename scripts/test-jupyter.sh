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

source scripts/clients.sh
# The workbooks use the bundled plugins.
plugins_built "$target"
tritlab="$(tritlab_bin "$target")"
# Python with the Jupyter clients.
venv="$target/jupyter-venv"
python_venv "$venv" 'jupyter_client, nbclient, nbformat' jupyter_client nbclient nbformat

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
