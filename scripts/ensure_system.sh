#!/bin/sh
# Installs the Debian packages a step needs when they are missing (only possible as root).
#   ensure_system.sh python   -> python3 with venv and pip, and a C compiler with the Python
#                                headers (mypyc compiles the hot stages; without them setup.py
#                                installs pure Python)
#   ensure_system.sh test     -> tshark and tcpdump (parity tests, benchmarks), iproute2 and
#                                tcpreplay (live tests on a veth pair in network namespaces,
#                                scripts/bench_live.py), ethtool, logrotate and
#                                systemd-analyze (service tests; systemd is installed, never
#                                started), redis-server (stream tests), rsyslog with its
#                                gnutls and relp modules (syslog sink tests; never started as a
#                                service), and syslog-ng-core unpacked into
#                                $PORT25_SYSLOG_NG_DIR (default /var/cache/port25-sensor/syslog-ng):
#                                it conflicts with rsyslog, so it is extracted, not installed,
#                                and the tests run it from there; redis-server (tests/stream
#                                start their own on loopback; the service is never used)
set -eu
want=""
want_sng=""
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
    # service tests (tests/service): traffic replayed into a veth, offloads turned off, the
    # systemd unit and the logrotate snippet checked by their own tools
    command -v tcpreplay >/dev/null 2>&1 || want="$want tcpreplay"
    command -v ethtool >/dev/null 2>&1 || want="$want ethtool"
    command -v logrotate >/dev/null 2>&1 || want="$want logrotate"
    command -v systemd-analyze >/dev/null 2>&1 || want="$want systemd"
    # Redis Streams tests (tests/stream): each starts its own server on loopback
    command -v redis-server >/dev/null 2>&1 || want="$want redis-server"
    # syslog sink tests: rsyslog's imtcp with the gtls driver, and imrelp
    for pkg in rsyslog rsyslog-gnutls rsyslog-relp; do
      dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || want="$want $pkg"
    done
    sng="${PORT25_SYSLOG_NG_DIR:-/var/cache/port25-sensor/syslog-ng}"
    [ -x "$sng/usr/sbin/syslog-ng" ] || want_sng=1
    ;;
  *) echo "usage: $0 python|test" >&2; exit 2 ;;
esac
[ -z "$want" ] && [ -z "$want_sng" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  [ -n "$want" ] && echo "missing Debian packages:$want (run as root, or: sudo apt-get install$want)" >&2
  [ -n "$want_sng" ] && echo "syslog-ng-core not extracted in $sng (run this script as root)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
if [ -n "$want" ]; then
  # tshark asks whether non-root users may capture; answer no without a prompt.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
  # Installing rsyslog must not start a system-wide daemon: the tests run their own.
  policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
    policy=1
  fi
  apt-get install -y -qq --no-install-recommends $want >/dev/null
  [ -n "$policy" ] && rm -f /usr/sbin/policy-rc.d
fi
if [ -n "$want_sng" ]; then
  # the libraries the extracted syslog-ng links to: ordinary packages that install beside
  # rsyslog (its package conflicts with rsyslog only as a syslog daemon)
  libs=""
  for pkg in $(apt-cache depends --no-recommends --no-suggests syslog-ng-core 2>/dev/null \
               | sed -n 's/^ *|\{0,1\}Depends: \(lib[^ <>]*\)$/\1/p'); do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || libs="$libs $pkg"
  done
  [ -z "$libs" ] || apt-get install -y -qq --no-install-recommends $libs >/dev/null
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -qq syslog-ng-core >/dev/null 2>&1)
  mkdir -p "$sng"
  dpkg-deb -x "$tmp"/syslog-ng-core_*.deb "$sng"
  rm -rf "$tmp"
fi
