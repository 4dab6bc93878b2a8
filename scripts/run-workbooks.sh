#!/usr/bin/env bash
# Runs every workbook shipped in workbooks/ headless and checks its exports.
#
#   scripts/run-workbooks.sh            # exports into target/workbook-exports
#   OUT=/tmp/books scripts/run-workbooks.sh
#
# Builds tritlab (release) unless TRITLAB_BIN names a binary, then runs each workbook (each workbooks/*.md whose first line is the
# workbook version line) with `tritlab run BOOK --no-save`, exporting OUT/NAME.html, OUT/NAME.ipynb
# and OUT/NAME.md, and validates every notebook against the nbformat schema with
# scripts/validate-ipynb.py (installing Debian's python3-nbformat when no Python has nbformat).
# Every workbook runs even when one fails; the exit status is 1 if any failed.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
out="${OUT:-$repo/target/workbook-exports}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# The workbooks use the bundled plugins.
if [[ ! -f "${TRITLAB_PLUGIN_DIR:-target/plugins}/gay-tracer.wasm" ]]; then
    scripts/build-plugins.sh
fi

# TRITLAB_BIN names an already built binary (the test script passes the one its workspace build
# made); otherwise build it.
tritlab="${TRITLAB_BIN:-}"
if [[ -z "$tritlab" ]]; then
    cargo build --release --locked -p tritlab
    tritlab="${CARGO_TARGET_DIR:-$repo/target}/release/tritlab"
fi
[[ -x "$tritlab" ]] || { echo "no tritlab binary at $tritlab" >&2; exit 1; }

# A Python that has nbformat: the one on PATH, Debian's, or Debian's after installing it.
python=""
for candidate in python3 /usr/bin/python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import nbformat' 2>/dev/null; then
        python="$candidate"
        break
    fi
done
if [[ -z "$python" ]]; then
    echo "installing python3-nbformat to validate the notebooks" >&2
    sudo=""
    if [[ "$(id -u)" -ne 0 ]]; then
        sudo="sudo"
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-nbformat >/dev/null
    python=/usr/bin/python3
fi

books=()
for book in workbooks/*.md; do
    if head -n 1 "$book" | grep -q '^<!-- tritlab-workbook v[0-9]* -->'; then
        books+=("$book")
    fi
done
if [[ ${#books[@]} -eq 0 ]]; then
    echo "no workbooks found in workbooks/" >&2
    exit 1
fi

failed=()
for book in "${books[@]}"; do
    name="$(basename "$book" .md)"
    echo "== $book"
    started=$SECONDS
    if "$tritlab" run "$book" --no-save \
        --export "$out/$name.html" --export "$out/$name.ipynb" --export "$out/$name.md"; then
        if ! "$python" scripts/validate-ipynb.py "$out/$name.ipynb"; then
            failed+=("$name (notebook)")
        fi
    else
        failed+=("$name")
    fi
    echo "== $book: $((SECONDS - started)) s"
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "workbooks that failed: ${failed[*]}" >&2
    exit 1
fi
echo "all ${#books[@]} workbooks ran; exports in $out"
