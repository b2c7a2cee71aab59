#!/usr/bin/env bash
# Device endpoint benchmark (see benches/devices.rs). Raises the open-file
# limit as far as allowed: every device holds a socket on each side.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)"
exec cargo bench --bench devices "$@"
