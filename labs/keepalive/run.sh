#!/bin/bash
# Runs lab-keepalive between two network namespaces joined by a veth pair,
# and removes them afterwards, also on Ctrl-C. Needs root and iproute2;
# without them the lab runs the half that needs neither.
#
#   labs/keepalive/run.sh build/bin/lab-keepalive [--json]
#
# LADDER_LAB_ID names the namespaces (ladder-ka-ID-srv, ladder-ka-ID-cli);
# by default the shell's process id, so parallel runs do not collide.
set -euo pipefail
lab=${1:?usage: $0 path/to/lab-keepalive [--json]}
shift
if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null; then
  echo "(not root, or no ip command: the cut-link half is skipped)"
  exec "$lab" "$@"
fi

id=${LADDER_LAB_ID:-$$}
srv=ladder-ka-$id-srv
cli=ladder-ka-$id-cli
created=()  # only what this run made is removed (the veth goes with its namespace)
cleanup() {
  for ns in "${created[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

ip netns add "$srv"  # fails, and so stops the run, if the name is taken
created+=("$srv")
ip netns add "$cli"
created+=("$cli")
# One veth pair, one end in each namespace: a cable between two hosts.
ip link add ka-srv netns "$srv" type veth peer name ka-cli netns "$cli"
ip -n "$srv" addr add 10.200.0.1/24 dev ka-srv
ip -n "$cli" addr add 10.200.0.2/24 dev ka-cli
ip -n "$srv" link set ka-srv up
ip -n "$cli" link set ka-cli up
# A fixed ARP entry: once the link is down, probes are lost in silence, as
# on a real cut cable, instead of failing early on address resolution.
mac=$(ip -n "$srv" -o link show ka-srv | sed -n 's|.*link/ether \([0-9a-f:]*\).*|\1|p')
ip -n "$cli" neigh replace 10.200.0.1 lladdr "$mac" dev ka-cli nud permanent

"$lab" --netns "/run/netns/$srv" "/run/netns/$cli" ka-srv 10.200.0.1 "$@"
