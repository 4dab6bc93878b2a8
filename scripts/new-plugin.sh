#!/usr/bin/env bash
# Starts a new plugin from the template in plugins/example.
#
#   scripts/new-plugin.sh my-tracer
#
# Creates plugins/my-tracer (a tracer; change the world in src/lib.rs for a
# checker or visualiser), adds it to the plugins workspace, and
# scripts/build-plugins.sh then builds it into target/plugins/my-tracer.wasm.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
plugins="$repo/plugins"

if [[ $# -ne 1 ]]; then
    echo "usage: $0 NAME   (lowercase letters, digits and dashes, e.g. my-tracer)" >&2
    exit 2
fi
name="$1"
if [[ ! "$name" =~ ^[a-z][a-z0-9-]*$ || "$name" == hostile || "$name" == target ]]; then
    echo "plugin name '$name' must be lowercase letters, digits and dashes, starting with a letter" >&2
    exit 2
fi
dest="$plugins/$name"
if [[ -e "$dest" ]]; then
    echo "$dest already exists" >&2
    exit 1
fi

mkdir -p "$dest/src"
sed -e "s/^name = \"example\"$/name = \"$name\"/" \
    -e "s/^description = .*/description = \"$name, a tritlab plugin.\"/" \
    "$plugins/example/Cargo.toml" >"$dest/Cargo.toml"
sed -e "s/name: \"example\".into()/name: \"$name\".into()/" \
    -e "s/\"example configured\"/\"$name configured\"/" \
    -e "s/^struct Example;/struct Plugin;/" \
    -e "s/for Example {/for Plugin {/" \
    -e "s/^export!(Example);/export!(Plugin);/" \
    -e "1,/^$/c\\//! $name: a tritlab tracer plugin, started from plugins/example.\\n" \
    "$plugins/example/src/lib.rs" >"$dest/src/lib.rs"

# Add the crate to the plugins workspace, before the hostile test plugins.
sed -i "s|^    \"hostile\",$|    \"$name\",\n    \"hostile\",|" "$plugins/Cargo.toml"
grep -q "^    \"$name\",$" "$plugins/Cargo.toml" || {
    echo "could not add $name to $plugins/Cargo.toml; add it to [workspace] members by hand" >&2
    exit 1
}

echo "created $dest"
echo "edit $dest/src/lib.rs, then run scripts/build-plugins.sh; the component is target/plugins/$name.wasm"
