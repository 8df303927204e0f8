#!/usr/bin/env bash
# Rebuilds the charting tablet from its sources and fails when the committed
# generated client (src/gen) or build (dist) differ from what the sources
# give: run by .ci/run after the Go tools (buf) are installed. Also
# type-checks and runs the app's unit tests. Needs node and npm.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$here"
npm ci --no-audit --no-fund --loglevel=error
(cd "$root" && buf generate --template clients/tablet/buf.gen.yaml)
npm run --silent build
npm run --silent typecheck
npm test --silent
cd "$root"
if [ -n "$(git status --porcelain -- clients/tablet)" ]; then
  git status --porcelain -- clients/tablet >&2
  git diff --stat -- clients/tablet >&2 || true
  echo "clients/tablet is stale: run clients/tablet/check-fresh.sh (npm ci, buf generate --template clients/tablet/buf.gen.yaml, npm run build) and commit the result" >&2
  exit 1
fi
echo "clients/tablet: generated client and build are fresh"
