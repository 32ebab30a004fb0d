#!/bin/bash
# Lab hosts — three hosts behind HAProxy: per-host shares, a host killed and rejoining, what the balancer costs.
# Needs: step-08 loadgen
#
# Makes six network namespaces — client, lb, host1..3, and sw, which holds
# only the bridge they all plug into by a veth pair each (10.201.0.0/24,
# inside the namespaces only: nothing leaves the machine) — runs
# labs/hosts/hosts.py across them, and removes the namespaces and every
# process in them afterwards, also on Ctrl-C. Needs root, iproute2 and
# haproxy (as root, tools/deps.sh labs installs it); without them it says
# so and stops.
#
#   labs/hosts/run.sh build/bin [--quick] [--json]
#
# LADDER_LAB_ID names the namespaces (ladder-h-ID-*); by default the
# shell's process id. Namespaces left by a run that was killed outright
# (its shell is gone) are removed first.
set -euo pipefail
bin=${1:?usage: $0 path/to/bin [lab flags]}
shift
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
py=$root/.venv/bin/python
[ -x "$py" ] || py=python3

if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null; then
  echo "lab-hosts needs root and iproute2: it makes six network namespaces, a bridge and veth"
  echo "pairs (and starts HAProxy in one). Run it as root (sudo make lab-hosts)."
  exit 1
fi
if ! command -v haproxy >/dev/null && ! [ -x /usr/sbin/haproxy ]; then
  "$root/tools/deps.sh" labs || { echo "lab-hosts needs haproxy: apt-get install -y haproxy"; exit 1; }
fi
haproxy=$(command -v haproxy || echo /usr/sbin/haproxy)

names=(client lb host1 host2 host3 sw)
remove_ns() {  # every process in it, then the namespace (its veth ends and bridge go with it)
  local ns=$1 pids
  pids=$(ip netns pids "$ns" 2>/dev/null || true)
  [ -z "$pids" ] || kill -TERM $pids 2>/dev/null || true
  for _ in $(seq 50); do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [ -z "$pids" ] && break
    sleep 0.1
  done
  [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
}

for old in $(ip netns list | awk '{print $1}' | sed -n 's/^ladder-h-\([0-9]*\)-sw$/\1/p'); do
  if ! kill -0 "$old" 2>/dev/null; then
    echo "(removing the namespaces of ladder-h-$old, left by a run that was killed)"
    for n in "${names[@]}"; do remove_ns "ladder-h-$old-$n"; done
  fi
done

id=${LADDER_LAB_ID:-$$}
prefix=ladder-h-$id
tmp=$(mktemp -d "/tmp/ladder-hosts-$id.XXXXXX")
created=()
cleanup() {
  for ns in "${created[@]}"; do remove_ns "$ns"; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

for n in "${names[@]}"; do
  ip netns add "$prefix-$n"  # fails, and so stops the run, if a name is taken
  created+=("$prefix-$n")
  ip -n "$prefix-$n" link set lo up
done
# The switch: a bridge, and one port of it per namespace.
ip -n "$prefix-sw" link add br0 type bridge
ip -n "$prefix-sw" link set br0 up
declare -A address=([client]=10.201.0.10 [lb]=10.201.0.2 [host1]=10.201.0.11
                    [host2]=10.201.0.12 [host3]=10.201.0.13)
for n in client lb host1 host2 host3; do
  ip link add eth0 netns "$prefix-$n" type veth peer name "$n" netns "$prefix-sw"
  ip -n "$prefix-sw" link set "$n" master br0 up
  ip -n "$prefix-$n" addr add "${address[$n]}/24" dev eth0
  ip -n "$prefix-$n" link set eth0 up
done

rc=0
"$py" "$here/hosts.py" --bin "$bin" --prefix "$prefix" --tmp "$tmp" --haproxy "$haproxy" "$@" || rc=$?
exit $rc
