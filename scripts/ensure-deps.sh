#!/usr/bin/env bash
# Installs the system packages the build needs, if they are missing, on a Debian-like machine.
#
# The only native toolchain regionstore needs beyond Rust and a C/C++ compiler is libclang, which
# the RocksDB bindings (bindgen) load at build time. Protobuf files are compiled in pure Rust
# (protox), so no protoc is needed. Idempotent: does nothing when everything is present.
set -euo pipefail

have_libclang() {
    # clang-sys finds libclang through llvm-config or the usual library directories.
    if [ -n "${LIBCLANG_PATH:-}" ] && ls "$LIBCLANG_PATH"/libclang*.so* >/dev/null 2>&1; then
        return 0
    fi
    ls /usr/lib/llvm-*/lib/libclang*.so* /usr/lib/*/libclang*.so* >/dev/null 2>&1
}

missing=()
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v c++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v clang >/dev/null 2>&1 || missing+=(clang)
have_libclang || missing+=(libclang-dev)

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

echo "regionstore: missing system packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
    echo "regionstore: run as root, or install them yourself: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "regionstore: no apt-get here; install the equivalent of: ${missing[*]}" >&2
    exit 1
fi
echo "regionstore: installing ${missing[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}"
