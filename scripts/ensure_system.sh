#!/bin/sh
# Installs the Debian packages a step needs when they are missing (only possible as root).
#   ensure_system.sh python   -> python3 with venv and pip, and a C compiler with the Python
#                                headers (mypyc compiles the hot stages; without them setup.py
#                                installs pure Python)
#   ensure_system.sh test     -> tshark and tcpdump (parity tests, benchmarks), iproute2 (live
#                                tests on a veth pair in network namespaces)
set -eu
want=""
case "${1:-}" in
  python)
    python3 -c 'import venv, ensurepip' 2>/dev/null || want="python3 python3-venv python3-pip"
    command -v cc >/dev/null 2>&1 || want="$want gcc"
    python3 -c 'import os, sysconfig; os.stat(sysconfig.get_paths()["include"] + "/Python.h")' \
      2>/dev/null || want="$want python3-dev"
    ;;
  test)
    command -v tshark >/dev/null 2>&1 || want="$want tshark"
    command -v tcpdump >/dev/null 2>&1 || want="$want tcpdump"
    command -v ss >/dev/null 2>&1 || want="$want iproute2"  # veth/netns live tests: ip, ss
    ;;
  *) echo "usage: $0 python|test" >&2; exit 2 ;;
esac
[ -z "$want" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages:$want (run as root, or: sudo apt-get install$want)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# tshark asks whether non-root users may capture; answer no without a prompt.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
apt-get install -y -qq --no-install-recommends $want >/dev/null
