#!/usr/bin/env bash
# Builds the shipped policies and the test guests to WebAssembly components, reproducibly: the
# same sources and toolchain give the same bytes from any checkout path, CARGO_HOME or target
# dir, so a test can rebuild into a temporary dir and compare with the committed dist/.
#
# usage: ./build.sh [TARGET_DIR [OUT_DIR]]
#   TARGET_DIR  cargo's target dir (default: $WASMNET_POLICIES_TARGET_DIR, else policies/target)
#   OUT_DIR     where the components go (default: $WASMNET_POLICIES_OUT_DIR, else policies/dist):
#               OUT_DIR/<policy>.wasm for the shipped policies, OUT_DIR/testdata/<guest>.wasm
#               for the test guests.
#
# Needs the wasm32-unknown-unknown target (`rustup target add wasm32-unknown-unknown`; done
# here when rustup is around). The components are linked by the wasm-component-ld that ships
# with Rust. Cargo's own settings apply (e.g. CARGO_BUILD_JOBS=1 on a busy machine).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
target_dir="${1:-${WASMNET_POLICIES_TARGET_DIR:-$here/target}}"
out_dir="${2:-${WASMNET_POLICIES_OUT_DIR:-$here/dist}}"
mkdir -p "$target_dir" "$out_dir/testdata"
target_dir="$(cd "$target_dir" && pwd -P)"
out_dir="$(cd "$out_dir" && pwd -P)"

# The shipped policies (dist/) and the test guests (dist/testdata/, crates testdata-<name>).
policies=(docker-default label-isolation egress-allowlist port-guard microsegmentation fqdn-egress)
guests=(loop memory-bomb recursion trap huge-output many-rules trap-on-label wrong-interface
    wrong-version newer-minor wasi-import other-import slow forged-log fail-open leaky-classify
    amplify v0-1-egress)

triple=wasm32-unknown-unknown
host="$(rustc -vV | sed -n 's/^host: //p')"
sysroot="$(rustc --print sysroot)"
if [ ! -d "$sysroot/lib/rustlib/$triple/lib" ]; then
    if command -v rustup >/dev/null; then
        rustup target add "$triple"
    else
        echo "build.sh: the $triple target is missing (rustup target add $triple)" >&2
        exit 1
    fi
fi
linker="$sysroot/lib/rustlib/$host/bin/wasm-component-ld"
if [ ! -x "$linker" ]; then
    echo "build.sh: $linker is missing (it ships with Rust 1.82 and later)" >&2
    exit 1
fi

# Paths that would otherwise end up in the binaries (panic locations, ...) are remapped to
# fixed names. rustc applies the last matching prefix, so the target dir (maybe inside the
# workspace) comes last.
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
if [ -d "$cargo_home" ]; then cargo_home="$(cd "$cargo_home" && pwd -P)"; fi
flags=(
    "--remap-path-prefix=$cargo_home=/cargo"
    "--remap-path-prefix=$here=/wasmnet/policies"
    "--remap-path-prefix=$target_dir=/target"
)
encoded="$(printf '%s\x1f' "${flags[@]}")"
# CARGO_ENCODED_RUSTFLAGS (separated by 0x1f, so paths may hold spaces) wins over every other
# source of flags, which would make the bytes depend on the environment.
unset RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS
export CARGO_ENCODED_RUSTFLAGS="${encoded%$'\x1f'}"
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$linker"
export CARGO_TARGET_DIR="$target_dir"
export CARGO_INCREMENTAL=0

packages=()
for p in "${policies[@]}"; do packages+=(-p "$p"); done
for g in "${guests[@]}"; do packages+=(-p "testdata-$g"); done
(cd "$here" && cargo build --release --locked --target "$triple" "${packages[@]}")

built="$target_dir/$triple/release"
copy() { # crate name, destination
    local src="$built/${1//-/_}.wasm"
    # A component starts with the magic number and layer 1: 00 61 73 6d 0d 00 01 00.
    if [ "$(head -c 8 "$src" | od -An -tx1 | tr -d ' \n')" != 0061736d0d000100 ]; then
        echo "build.sh: $src is not a WebAssembly component" >&2
        exit 1
    fi
    cp "$src" "$2"
    printf '%8d  %s\n' "$(wc -c <"$2")" "$2"
}
for p in "${policies[@]}"; do copy "$p" "$out_dir/$p.wasm"; done
for g in "${guests[@]}"; do copy "testdata-$g" "$out_dir/testdata/$g.wasm"; done
