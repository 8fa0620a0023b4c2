#!/usr/bin/env bash
# Train, test and export LDKNN on data reachable offline; one panel per test image lands in demo_output/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m anomalib_pdae.demo "$@"
