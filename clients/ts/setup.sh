#!/usr/bin/env bash
# Installs the TypeScript client's npm dependencies, exactly as pinned in package-lock.json
# (`npm ci`). Idempotent and quick: skipped when node_modules/ was installed from this very
# lock file by this Node version.
set -euo pipefail
cd "$(dirname "$0")"
command -v npm >/dev/null || { echo "clients/ts/setup.sh: ERROR: npm is not installed" >&2; exit 1; }
stamp=node_modules/.qis-setup-stamp
want="$(node --version) $(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi
echo "clients/ts/setup.sh: npm ci"
npm ci --no-audit --no-fund --loglevel=error
echo "$want" > "$stamp"
