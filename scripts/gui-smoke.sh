#!/usr/bin/env bash
# Smoke test of the desktop workbench: opens a real window on a virtual X display (Xvfb), runs a
# small workbook, saves a screenshot, and checks that the picture is not blank.
#
# Usage: scripts/gui-smoke.sh [OUT_DIR]      (default: target/gui-smoke)
#   SMOKE_BOOK=path.md   workbook to open instead of the generated one
#   SMOKE_DELAY=8        seconds before the screenshot (it also waits for running cells)
#   SMOKE_PROFILE=dev    cargo profile to build with: dev (quick), test (optimised, shares the
#                        build of `cargo test`) or release
#   SMOKE_BINARY=path    an already built `workbench` example to run instead of building one
#   CARGO_TARGET_DIR     honoured
#
# Installs what it lacks with apt-get (as root, or through sudo): Xvfb, Mesa's software Vulkan
# (lavapipe) and OpenGL drivers. Prints the launch-to-first-frame time, frame times and the
# window's resident memory; exits non-zero if anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."

out="${1:-target/gui-smoke}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
delay="${SMOKE_DELAY:-8}"
target_dir="${CARGO_TARGET_DIR:-target}"

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

missing=()
command -v Xvfb >/dev/null || missing+=(xvfb)
[[ -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json || -e /usr/share/vulkan/icd.d/lvp_icd.aarch64.json ]] \
  || missing+=(mesa-vulkan-drivers)
ls /usr/lib/*/dri/swrast_dri.so >/dev/null 2>&1 || missing+=(libgl1-mesa-dri)
ldconfig -p | grep -q 'libEGL.so.1' || missing+=(libegl1)
ldconfig -p | grep -q 'libxkbcommon-x11.so.0' || missing+=(libxkbcommon-x11-0)
if ((${#missing[@]})); then
  echo "gui-smoke: installing ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi

binary="${SMOKE_BINARY:-}"
if [[ -z "$binary" ]]; then
  profile="${SMOKE_PROFILE:-dev}"
  cargo build -p tritlab-workbench --example workbench --profile "$profile"
  case "$profile" in
    dev | test) binary="$target_dir/debug/examples/workbench" ;;
    *) binary="$target_dir/$profile/examples/workbench" ;;
  esac
fi
[[ -x "$binary" ]] || { echo "gui-smoke: no workbench binary at $binary"; exit 1; }

book="${SMOKE_BOOK:-}"
if [[ -z "$book" ]]; then
  book="$out/smoke.md"
  cat >"$book" <<'EOF'
<!-- tritlab-workbook v1 -->

# Workbench smoke test

The default model, a few tokens coloured by the tracer, and one tensor drawn.

```tritlab
info
```

```tritlab
generate "To be" --max-tokens 12 --seed 7
```

```tritlab
show layers.0.self_attn.q_proj
```
EOF
fi
shot="$out/workbench.png"
log="$out/workbench.log"
rm -f "$shot"

# A display number nobody uses.
display=99
while [[ -e /tmp/.X11-unix/X$display || -e /tmp/.X$display-lock ]]; do display=$((display + 1)); done

xvfb_pid=""
app_pid=""
cleanup() {
  [[ -n "$app_pid" ]] && kill "$app_pid" 2>/dev/null || true
  [[ -n "$xvfb_pid" ]] && kill "$xvfb_pid" 2>/dev/null || true
}
trap cleanup EXIT

Xvfb ":$display" -screen 0 1600x1000x24 -nolisten tcp >"$out/xvfb.log" 2>&1 &
xvfb_pid=$!
for _ in $(seq 50); do
  [[ -e /tmp/.X11-unix/X$display ]] && break
  sleep 0.1
done
[[ -e /tmp/.X11-unix/X$display ]] || { echo "gui-smoke: Xvfb did not start"; cat "$out/xvfb.log"; exit 1; }

echo "gui-smoke: running the workbench on :$display with $book"
DISPLAY=":$display" WAYLAND_DISPLAY="" "$binary" "$book" --run --no-persist \
  --screenshot "$delay" "$shot" >"$log" 2>&1 &
app_pid=$!

# Sample the window's resident memory while it runs; give up after four minutes.
peak_kb=0
deadline=$((SECONDS + 240))
while kill -0 "$app_pid" 2>/dev/null; do
  if ((SECONDS > deadline)); then
    echo "gui-smoke: the workbench did not close within four minutes"
    tail -n 40 "$log"
    exit 1
  fi
  rss_kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$app_pid/status" 2>/dev/null || true)
  if ((${rss_kb:-0} > peak_kb)); then peak_kb=$rss_kb; fi
  sleep 0.25
done
status=0
wait "$app_pid" || status=$?
app_pid=""

grep '^tritlab-workbench:' "$log" || true
if ((status != 0)); then
  echo "gui-smoke: the workbench exited with status $status"
  tail -n 40 "$log"
  exit 1
fi
[[ -s "$shot" ]] || { echo "gui-smoke: no screenshot at $shot"; exit 1; }

# Count the distinct colours of the screenshot: a blank window has one or two.
colours=$(python3 - "$shot" <<'EOF'
import struct, sys, zlib

def colours(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour_type = header[:4]
    assert depth == 8 and colour_type in (2, 6), f"unexpected PNG format {depth}/{colour_type}"
    bpp = 4 if colour_type == 6 else 3
    raw, stride = zlib.decompress(idat), width * bpp
    previous, seen, at = bytearray(stride), set(), 0
    for _ in range(height):
        kind, row = raw[at], bytearray(raw[at + 1:at + 1 + stride])
        at += 1 + stride
        for i in range(stride):
            a = row[i - bpp] if i >= bpp else 0
            b = previous[i]
            c = previous[i - bpp] if i >= bpp else 0
            if kind == 1: row[i] = (row[i] + a) & 255
            elif kind == 2: row[i] = (row[i] + b) & 255
            elif kind == 3: row[i] = (row[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[i] = (row[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        seen.update(bytes(row[i:i + bpp]) for i in range(0, stride, bpp))
        previous = row
    return len(seen)

print(colours(sys.argv[1]))
EOF
)
echo "gui-smoke: screenshot $shot has $colours colours"
echo "gui-smoke: peak resident memory of the window $((peak_kb / 1024)) MiB"
if ((colours < 16)); then
  echo "gui-smoke: the screenshot looks blank"
  exit 1
fi
echo "gui-smoke: ok"
