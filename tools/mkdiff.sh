#!/usr/bin/env bash
# Writes docs/diffs/BB-NN.diff: the code of step NN (every .cpp and .h of its
# directory) against the step it grows from, BB, named by `base = "BB"` in
# steps/NN-*/step.toml (after chenshuo's recipes/reactor mkdiff.sh). Most
# steps grow from the one before; 07 and 08 both grow from 06, so that no
# diff undoes another. `--check` fails if a committed diff is stale or one
# is left over from a pairing that no longer exists.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/diffs
check=false
[ "${1:-}" = "--check" ] && check=true
mkdir -p "$out"

dir_of() { ls -d steps/"$1"-*/ 2>/dev/null | head -n 1 | sed 's:/$::'; }

# The code files of two step directories, diffed one by one with stable
# labels (no timestamps), new and removed files included.
diff_steps() {
  local a=$1 b=$2 f
  for f in $( { (cd "$a" && ls -- *.cpp *.h 2>/dev/null); (cd "$b" && ls -- *.cpp *.h 2>/dev/null); } | sort -u); do
    local left="$a/$f" right="$b/$f"
    [ -e "$left" ] || left=/dev/null
    [ -e "$right" ] || right=/dev/null
    diff -u --label "$a/$f" --label "$b/$f" "$left" "$right" || true
  done
}

stale=0
expected=()
for toml in steps/[0-9][0-9]-*/step.toml; do
  b=$(dirname "$toml")
  base=$(sed -n 's/^base *= *"\([0-9][0-9]\)".*/\1/p' "$toml")
  [ -n "$base" ] || continue
  a=$(dir_of "$base")
  [ -n "$a" ] || { echo "$toml: base $base: no such step" >&2; stale=1; continue; }
  name="$base-$(basename "$b" | cut -c1-2).diff"
  expected+=("$name")
  new=$(diff_steps "$a" "$b")
  if $check; then
    if [ "$new" != "$(cat "$out/$name" 2>/dev/null)" ]; then
      echo "stale: $out/$name (run tools/mkdiff.sh)" >&2
      stale=1
    fi
  else
    printf '%s\n' "$new" > "$out/$name"
  fi
done
# A diff of a pairing that no longer exists is an orphan.
for f in "$out"/*.diff; do
  [ -e "$f" ] || continue
  case " ${expected[*]} " in *" $(basename "$f") "*) continue ;; esac
  if $check; then
    echo "orphan: $f (no step names that base now; run tools/mkdiff.sh)" >&2
    stale=1
  else
    rm -f "$f"
  fi
done
exit $stale
