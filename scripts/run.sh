#!/usr/bin/env bash
# Builds the bundled plugins, then runs tritlab (by default: the tour of the default model).
# Arguments go to tritlab, e.g. scripts/run.sh generate "To be" --max-tokens 32.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-plugins.sh
cargo run --release --locked -p tritlab -- "$@"
