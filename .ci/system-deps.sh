#!/usr/bin/env bash
# System packages the test-suite needs beyond Python (none yet).
set -euo pipefail
