#!/usr/bin/env bash
# Writes docs/diffs/NN-MM.diff: each step's server.cpp against the previous
# step's, so a step's README can link the lesson as a diff (after chenshuo's
# recipes/reactor mkdiff.sh). `--check` fails if a committed diff is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/diffs
check=false
[ "${1:-}" = "--check" ] && check=true
mkdir -p "$out"
steps=(steps/[0-9][0-9]-*/)
stale=0
expected=()
for ((i = 1; i < ${#steps[@]}; i++)); do
  a=${steps[i-1]%/} b=${steps[i]%/}
  name="$(basename "$a" | cut -c1-2)-$(basename "$b" | cut -c1-2).diff"
  expected+=("$name")
  new=$(diff -u --label "$a/server.cpp" --label "$b/server.cpp" "$a/server.cpp" "$b/server.cpp" || true)
  if $check; then
    if [ "$new" != "$(cat "$out/$name" 2>/dev/null)" ]; then
      echo "stale: $out/$name (run tools/mkdiff.sh)" >&2
      stale=1
    fi
  else
    printf '%s\n' "$new" > "$out/$name"
  fi
done
# A diff between steps that are no longer neighbours is an orphan.
for f in "$out"/*.diff; do
  [ -e "$f" ] || continue
  case " ${expected[*]} " in *" $(basename "$f") "*) continue ;; esac
  if $check; then
    echo "orphan: $f (steps are no longer adjacent; run tools/mkdiff.sh)" >&2
    stale=1
  else
    rm -f "$f"
  fi
done
exit $stale
