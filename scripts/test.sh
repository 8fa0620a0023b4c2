#!/usr/bin/env bash
# Run the whole test suite (installs the environment first if needed).
# Test files are spread over one pytest worker per CPU core (PYTEST_WORKERS overrides; 0 runs in
# one process); each file stays on one worker, so its trained fixtures are built once.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -n "${PYTEST_WORKERS:-auto}" --dist loadfile "$@"
