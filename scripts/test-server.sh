#!/usr/bin/env bash
# `tritlab serve` under the official OpenAI Python client.
#
#   scripts/test-server.sh
#
# Builds tritlab (release) unless TRITLAB_BIN names a binary; makes a Python virtual environment
# (target/server-venv, kept between runs) with `openai` from PyPI; starts `tritlab serve` on the
# default model on a free loopback port, with the 2B-4T chat template (the default model has
# none), the gay-tracer plugin and an API key; then runs scripts/test-server.py, which streams
# completions and chat completions through the client and compares them with what `tritlab
# generate` and `tritlab chat` print for the same prompt and settings (text and tracer colours),
# and checks the client's errors. Exits non-zero if any check failed.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
target="${CARGO_TARGET_DIR:-$repo/target}"

source scripts/clients.sh
# The tracer the server and `tritlab generate` colour tokens with.
plugins_built "$target"
tritlab="$(tritlab_bin "$target")"
# Python with the OpenAI client.
venv="$target/server-venv"
python_venv "$venv" openai openai

scratch="$(mktemp -d)"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$scratch"
}
trap cleanup EXIT

# BitNet b1.58 2B-4T's chat template, as a Jinja file for `serve` and `chat` alike.
"$venv/bin/python" -c '
import json, sys
config = json.load(open("tests/fixtures/chat/bitnet-2b4t/tokenizer_config.json"))
open(sys.argv[1], "w").write(config["chat_template"])
' "$scratch/2b4t.jinja"

key="test-key-$RANDOM$RANDOM"
mkfifo "$scratch/out"
"$tritlab" serve default --port 0 --max-batch 4 --chat-template "$scratch/2b4t.jinja" \
    --tracer gay-tracer --api-key "$key" >"$scratch/out" &
server_pid=$!
exec 3<"$scratch/out"
read -r -t 120 line <&3 || { echo "tritlab serve did not start" >&2; exit 1; }
url="${line#listening on }"
[[ "$url" == http://* ]] || { echo "unexpected first line: $line" >&2; exit 1; }

status=0
"$venv/bin/python" scripts/test-server.py "$url" "$key" "$tritlab" "$scratch/2b4t.jinja" || status=$?

# SIGTERM: the server drains and exits 0.
kill -TERM "$server_pid"
server_status=0
wait "$server_pid" || server_status=$?
server_pid=""
if [[ "$server_status" -ne 0 ]]; then
    echo "FAIL tritlab serve exited with $server_status after SIGTERM" >&2
    status=1
else
    echo "ok   tritlab serve exited 0 after SIGTERM"
fi
exit "$status"
