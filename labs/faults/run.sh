#!/bin/bash
# Lab faults — on a lossy, slow, then cut link every event-loop step keeps every byte and frees the dead connection.
#
# Runs labs/faults/faults.py between two network namespaces of its own and
# removes them afterwards, also on Ctrl-C or a kill. Needs root, iproute2
# (ip, tc) and nftables (installed here with apt-get when missing).
#
#   labs/faults/run.sh build/bin [faults.py options: --size, --rate, --steps, --json ...]
#
# LADDER_LAB_ID names the namespaces (ladder-fl-ID-srv, ladder-fl-ID-cli);
# by default the shell's process id, so parallel runs do not collide.
set -euo pipefail
bin=${1:?usage: $0 path/to/bin [faults.py options]}
shift
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
py=$root/.venv/bin/python
[ -x "$py" ] || py=python3

# Without what it needs there is nothing to run: say so, and stop (exit 0).
if [ "$(id -u)" -ne 0 ]; then
  echo "skipped: the faults lab needs root (two network namespaces, a veth pair per step, nftables, tc)" >&2
  exit 0
fi
for tool in ip tc; do
  command -v "$tool" >/dev/null || { echo "skipped: no $tool command (apt-get install iproute2)" >&2; exit 0; }
done
if ! command -v nft >/dev/null; then
  echo "Installing nftables (the random packet loss is an nftables rule)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq nftables >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq nftables >/dev/null; } ||
    { echo "skipped: nftables could not be installed (apt-get install nftables)" >&2; exit 0; }
fi

id=${LADDER_LAB_ID:-$$}
srv=ladder-fl-$id-srv
cli=ladder-fl-$id-cli
created=()  # only what this run made is removed (the veths go with their namespace)
cleanup() {
  # A process left in a namespace would keep it alive after `ip netns del`:
  # end the ones that run there (servers this run started), then the names.
  for ns in "${created[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
  done
  for ns in "${created[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP  # until the driver runs

ip netns add "$srv"  # fails, and so stops the run, if the name is taken
created+=("$srv")
ip netns add "$cli"
created+=("$cli")
ip -n "$srv" link set lo up
ip -n "$cli" link set lo up

# The driver runs as the client host; it makes a link per step, the faults,
# and starts each server in the server namespace. In the background, so that
# a signal to this script runs its trap at once (bash waits for a foreground
# child first); the driver turns SIGTERM into its own clean-up.
ip netns exec "$cli" "$py" "$here/faults.py" --bin "$bin" --srv-ns "$srv" --cli-ns "$cli" "$@" &
driver=$!
stop_driver() {  # up to 5 s for its own clean-up, then the EXIT trap kills what is left
  kill -TERM "$driver" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$driver" 2>/dev/null || break; sleep 0.1; done
  exit 130
}
trap stop_driver INT TERM HUP
rc=0
wait "$driver" || rc=$?
exit $rc
