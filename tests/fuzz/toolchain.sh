#!/usr/bin/env bash
# Makes sure clang and its libFuzzer runtime are here (make fuzz needs both),
# the way tools/deps.sh does for the rest: as root, apt-get installs what is
# missing; otherwise it prints the exact command and exits 1.
set -euo pipefail

have_runtime() {
  command -v clang++ >/dev/null &&
    test -f "$(clang++ -print-runtime-dir 2>/dev/null)/libclang_rt.fuzzer-x86_64.a"
}
have_runtime && exit 0

# Debian ships the runtime apart from the compiler (only "Recommended").
if command -v clang++ >/dev/null; then
  version=$(clang++ -dumpversion | cut -d. -f1)
  need=(libclang-rt-"$version"-dev)
else
  version=$(apt-cache depends clang 2>/dev/null | sed -n 's/.*Depends: clang-\([0-9]*\)$/\1/p' | head -1)
  need=(clang ${version:+libclang-rt-"$version"-dev})
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "make fuzz needs clang's libFuzzer runtime. Install it with:" >&2
  echo "  sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "Installing: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq "${need[@]}" >/dev/null || { apt-get update -qq; apt-get install -y -qq "${need[@]}" >/dev/null; }
have_runtime || { echo "still no libclang_rt.fuzzer after installing ${need[*]}" >&2; exit 1; }
