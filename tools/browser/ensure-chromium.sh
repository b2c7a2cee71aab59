#!/usr/bin/env bash
# Makes sure the browser the browser tests drive is here: Debian's
# Chromium (package `chromium`), installed with apt-get when missing and
# we may (root). Prints its path; fails saying why otherwise.
set -euo pipefail
browser="${CHROMIUM:-/usr/bin/chromium}"
if [ -x "$browser" ]; then
  echo "$browser"
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  # Other tests may be installing at the same time: wait for dpkg's lock.
  apt-get -o DPkg::Lock::Timeout=300 update -qq >&2
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends chromium >&2
  if [ -x "$browser" ]; then
    echo "$browser"
    exit 0
  fi
fi
echo "the browser tests need Chromium at $browser: install Debian's chromium package (apt-get install chromium) or set CHROMIUM" >&2
exit 1
