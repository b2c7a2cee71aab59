#!/usr/bin/env bash
# Load benchmark of the GraphQL server (see benches/server.rs). Raises the
# open-file limit as far as allowed: the fan-out test holds one socket per
# subscriber on each side.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)"
exec cargo bench --bench server "$@"
