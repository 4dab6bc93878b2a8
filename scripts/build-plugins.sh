#!/usr/bin/env bash
# Builds every plugin in plugins/ into a WebAssembly component.
#
#   scripts/build-plugins.sh
#
# Output: target/plugins/<name>.wasm for the bundled plugins and
# target/plugins/hostile/<misbehaviour>.wasm for the sandbox tests' hostile
# ones. The host's tests load them from there.
#
# Toolchain: rustup's wasm32-wasip2 target when it is installed; otherwise
# Debian's rustc-web toolchain with a std rebuilt for wasm32-wasip2
# (RUSTC_BOOTSTRAP=1 -Zbuild-std), installing the Debian packages it needs
# when they are missing. Cargo's own caching makes a second run quick.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
plugins="$repo/plugins"
out="$repo/target/plugins"
target=wasm32-wasip2
target_dir="$plugins/target"

# Every crate folder directly under plugins/ is a bundled plugin (so one made
# by scripts/new-plugin.sh is picked up); plugins/hostile holds test plugins.
bundled=()
for manifest in "$plugins"/*/Cargo.toml; do
    name="$(basename "$(dirname "$manifest")")"
    [[ "$name" == hostile ]] || bundled+=("$name")
done
# features of the `hostile` crate, one misbehaviour each
hostile_features=(infinite-loop memory-bomb trap oversized-output nonsense-output snoop sleeper poller)

log() { printf '[build-plugins] %s\n' "$*" >&2; }

# The wrong-version plugin is built from the real contract with its version
# rewritten, so it differs from the host's contract in nothing else.
sync_wrong_version_wit() {
    local source="$repo/wit/tritlab-plugin.wit"
    local dest="$plugins/hostile/wrong-version/wit/tritlab-plugin.wit"
    local rewritten
    rewritten="$(sed -E 's/^package tritlab:plugin@[0-9A-Za-z.+-]+;$/package tritlab:plugin@9.0.0;/' "$source")"
    if ! grep -q '^package tritlab:plugin@9.0.0;$' <<<"$rewritten"; then
        log "cannot find the package line in $source"
        exit 1
    fi
    mkdir -p "$(dirname "$dest")"
    # Rewrite only on change, so cargo does not rebuild it every run.
    if [[ ! -f "$dest" ]] || [[ "$(cat "$dest")" != "$rewritten" ]]; then
        printf '%s\n' "$rewritten" >"$dest"
    fi
}

have_rustup_target() {
    command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx "$target"
}

# The LLVM major version Debian's rustc was built with; its wasm-ld must match.
debian_llvm_major() {
    /usr/bin/rustc --version --verbose 2>/dev/null | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p'
}

debian_toolchain_ready() {
    local major
    [[ -x /usr/bin/rustc && -x /usr/bin/cargo ]] || return 1
    /usr/bin/rustc --print target-list 2>/dev/null | grep -qx "$target" || return 1
    [[ -d /usr/lib/rustlib/src/rust/library ]] || return 1
    [[ -f /usr/lib/wasm32-wasi/libc.a ]] || return 1
    major="$(debian_llvm_major)"
    [[ -n "$major" && -x "/usr/lib/llvm-$major/bin/wasm-ld" ]] || return 1
}

# apt-get needs root: use sudo when this script runs as another user.
apt_get() {
    if [[ $EUID -ne 0 ]] && command -v sudo >/dev/null 2>&1; then
        sudo DEBIAN_FRONTEND=noninteractive apt-get "$@"
    else
        DEBIAN_FRONTEND=noninteractive apt-get "$@"
    fi
}

install_debian_toolchain() {
    local packages=(rustc-web cargo-web rust-web-src wasi-libc)
    log "installing Debian's wasm toolchain: ${packages[*]} and a matching lld"
    export DEBIAN_FRONTEND=noninteractive
    apt_get update -q
    apt_get install -y -q "${packages[@]}"
    local major
    major="$(debian_llvm_major)"
    if [[ -z "$major" ]]; then
        log "/usr/bin/rustc does not report its LLVM version"
        exit 1
    fi
    # wasm-component-ld drives wasm-ld, which rustc-web does not pull in.
    apt_get install -y -q "lld-$major"
}

start=$SECONDS
sync_wrong_version_wit
mkdir -p "$out/hostile"

if have_rustup_target; then
    log "toolchain: rustup's $target target ($(rustc --version))"
    cargo_cmd=(env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS cargo)
    build_std=()
else
    if ! debian_toolchain_ready; then
        install_debian_toolchain
        if ! debian_toolchain_ready; then
            log "Debian's toolchain is still incomplete after installing it"
            exit 1
        fi
    fi
    wasm_ld="/usr/lib/llvm-$(debian_llvm_major)/bin/wasm-ld"
    log "toolchain: Debian's $(/usr/bin/rustc --version) with -Zbuild-std, linker $wasm_ld"
    # Keep RUSTFLAGS identical between runs: any change rebuilds std.
    cargo_cmd=(env -u CARGO_ENCODED_RUSTFLAGS RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc
        "RUSTFLAGS=-L /usr/lib/wasm32-wasi -C link-arg=--wasm-ld-path=$wasm_ld" /usr/bin/cargo)
    build_std=(-Zbuild-std=std,panic_abort)
fi

build() {
    "${cargo_cmd[@]}" build --release --manifest-path "$plugins/Cargo.toml" \
        --target "$target" --target-dir "$target_dir" "${build_std[@]}" "$@"
}

artifact() {
    printf '%s/%s/release/%s.wasm' "$target_dir" "$target" "${1//-/_}"
}

install_if_changed() {
    if ! cmp -s "$1" "$2"; then
        install -m 0644 "$1" "$2"
    fi
}

packages=()
for name in "${bundled[@]}" hostile-wrong-version; do
    packages+=(-p "$name")
done
log "building ${bundled[*]} hostile-wrong-version"
build "${packages[@]}"
for name in "${bundled[@]}"; do
    install_if_changed "$(artifact "$name")" "$out/$name.wasm"
done
install_if_changed "$(artifact hostile-wrong-version)" "$out/hostile/wrong-version.wasm"

for feature in "${hostile_features[@]}"; do
    log "building hostile plugin: $feature"
    build -p hostile --features "$feature"
    install_if_changed "$(artifact hostile)" "$out/hostile/$feature.wasm"
done

log "done in $((SECONDS - start)) s:"
(cd "$out" && find . -name '*.wasm' -printf '  target/plugins/%P (%s bytes)\n' | sort) >&2
