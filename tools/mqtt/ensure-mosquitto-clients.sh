#!/usr/bin/env bash
# Makes sure the Eclipse Mosquitto command-line clients the device tests use
# are here (Debian's `mosquitto-clients`: mosquitto_pub, mosquitto_sub),
# installed with apt-get when missing and we may (root). Prints the folder
# they are in; fails saying why otherwise.
set -euo pipefail
if command -v mosquitto_pub >/dev/null && command -v mosquitto_sub >/dev/null; then
  dirname "$(command -v mosquitto_pub)"
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  # Other tests may be installing at the same time: wait for dpkg's lock.
  apt-get -o DPkg::Lock::Timeout=300 update -qq >&2
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends mosquitto-clients >&2
  if command -v mosquitto_pub >/dev/null; then
    dirname "$(command -v mosquitto_pub)"
    exit 0
  fi
fi
echo "the device tests need mosquitto_pub and mosquitto_sub: install Debian's mosquitto-clients package (apt-get install mosquitto-clients)" >&2
exit 1
