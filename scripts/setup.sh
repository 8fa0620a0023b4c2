#!/usr/bin/env bash
# Create .venv (once) with torch, anomalib and this package installed editable.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  echo "Installing torch (a few minutes)..."
  case "$(uname -m)" in
    aarch64|arm64) .venv/bin/python -m pip install --quiet torch==2.9.1 torchvision==0.24.1 ;;
    *) .venv/bin/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1 ;;
  esac
fi
.venv/bin/python -m pip install --quiet -e ".[dev]"
