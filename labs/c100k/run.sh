#!/bin/bash
# Lab c100k — 100,000 connections held on 2 cores: what each idle one costs, step by step.
# Needs: step-04 step-05 step-06 step-08 step-09 step-10 step-11 loadgen
#
# Runs labs/c100k/c100k.py inside a network namespace of its own, so its
# sysctls (somaxconn, tcp_max_syn_backlog, ip_local_port_range) change
# nothing outside it, and removes the namespace and every process in it
# afterwards, also on Ctrl-C. Needs root and iproute2; without them it says
# so and stops.
#
#   labs/c100k/run.sh build/bin [--connections N] [--steps 05,08] [--push] ...
#   (labs/c100k/c100k.py --help lists the flags)
#
# LADDER_LAB_ID names the namespace (ladder-c100k-ID); by default the
# shell's process id, so parallel runs do not collide. A namespace left by
# a run that was killed outright (its shell is gone) is removed first.
set -euo pipefail
bin=${1:?usage: $0 path/to/bin [lab flags]}
shift
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
py=$root/.venv/bin/python
[ -x "$py" ] || py=python3

if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null; then
  echo "lab-c100k needs root and iproute2: it makes a network namespace of its own, so that"
  echo "raising somaxconn and the port range there changes nothing on this machine."
  echo "Run it as root (sudo make lab-c100k)."
  exit 1
fi

# Every process in a namespace, then the namespace.
remove_ns() {
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

for old in $(ip netns list | awk '{print $1}' | grep -E '^ladder-c100k-[0-9]+$' || true); do
  if ! kill -0 "${old##*-}" 2>/dev/null; then
    echo "(removing $old, left by a run that was killed)"
    remove_ns "$old"
  fi
done

id=${LADDER_LAB_ID:-$$}
ns=ladder-c100k-$id
made=false
cleanup() { if $made; then remove_ns "$ns"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

ip netns add "$ns"  # fails, and so stops the run, if the name is taken
made=true
ip -n "$ns" link set lo up
# In this namespace only: a deep accept queue (100,000 handshakes arrive in
# seconds), and every port from 1024 for each source address.
ip netns exec "$ns" sysctl -qw net.core.somaxconn=65535 net.ipv4.tcp_max_syn_backlog=65535 \
  net.ipv4.ip_local_port_range="1024 65535"

# Not exec: the trap removes the namespace once the lab has returned.
rc=0
ip netns exec "$ns" "$py" "$here/c100k.py" --bin "$bin" "$@" || rc=$?
exit $rc
