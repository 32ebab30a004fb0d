#!/usr/bin/env bash
# Installs the Debian packages a make target needs, or says exactly how.
#   tools/deps.sh test       build + unit tests + pytest suite (which also executes
#                            the notebooks and renders the slides: nbclient, Node.js,
#                            and Chromium, which projects every slide and measures it)
#   tools/deps.sh bench      build + plots (matplotlib) + strace
#   tools/deps.sh hotpath    build + valgrind (callgrind), perf when present
#   tools/deps.sh notebooks  build + nbclient, matplotlib, jupyter-nbconvert (HTML copies)
#   tools/deps.sh jupyter    the above + jupyter-notebook, for make notebooks-serve
#   tools/deps.sh slides     Node.js 18+ and npm, for Marp CLI (slides/package-lock.json)
#   tools/deps.sh labs       build + what the namespace labs run: iproute2, nftables (lab-faults), haproxy (lab-hosts)
# As root: apt-get installs what is missing. Otherwise: prints the command
# and exits 1, so `make` stops before doing half the job.
set -euo pipefail

if [ "$(uname -s)" != "Linux" ]; then
  echo "Server Ladder teaches Linux system calls (epoll, eventfd, SO_REUSEPORT);" >&2
  echo "run it on Linux (Debian 12 or Ubuntu 22.04+), e.g. in a VM or container." >&2
  exit 1
fi

need=(cmake ninja-build g++ make doctest-dev liburing-dev python3-venv python3-pytest python3-pytest-timeout)
# The suite executes the notebooks and renders the slides, so `test` needs them too.
learn=(python3-matplotlib python3-nbclient python3-ipykernel)
node=false
case "${1:-test}" in
  # nftables and haproxy: the faults and hosts labs, whose tests run in make test.
  test) need+=("${learn[@]}" strace chromium nftables haproxy); node=true ;;
  bench) need+=(python3-matplotlib strace)
    command -v perf >/dev/null ||
      echo "optional, to count system calls without slowing the server: apt-get install -y linux-perf" >&2
    # Reference rows when present, never required: wrk checks loadgen, nginx and
    # Go's goroutine-per-connection server (tools/reference/go) are peers.
    { command -v wrk && { command -v nginx || [ -x /usr/sbin/nginx ]; } && command -v go; } \
        >/dev/null ||
      echo "optional, for reference rows in make bench: apt-get install -y wrk nginx-light golang-go" >&2 ;;
  hotpath) need+=(valgrind)
    command -v perf >/dev/null ||
      echo "optional, to count system calls without slowing the server: apt-get install -y linux-perf" >&2 ;;
  notebooks) need+=("${learn[@]}" jupyter-nbconvert) ;;
  jupyter) need+=("${learn[@]}" jupyter-nbconvert jupyter-notebook) ;;
  slides) need=(); node=true ;;
  labs) need+=(iproute2 nftables haproxy) ;;
  *) echo "usage: tools/deps.sh test|bench|hotpath|notebooks|jupyter|slides|labs" >&2; exit 2 ;;
esac

if ! command -v dpkg-query >/dev/null; then
  echo "No dpkg here: install these (or your system's equivalents) by hand:" >&2
  echo "  ${need[*]}" >&2
  exit 1
fi

missing=()
for p in "${need[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$p")
done
# Node.js may come from elsewhere (NodeSource ships npm inside its nodejs):
# ask for the commands, not the Debian packages.
if $node; then
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "Missing packages. Install them with:" >&2
  echo "  sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "Installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh machine may have no package lists yet.
if ! apt-get install -y -qq "${missing[@]}" >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
