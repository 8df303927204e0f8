#!/usr/bin/env bash
# Installs the npm packages of the HL7 v2 validator (hl7parser, pinned in
# package-lock.json) so that hl7/v2's TestIndependentParser can run. CI
# calls this before `go test`; with CI set, that test fails when they are
# missing rather than skipping.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --loglevel=error
