#!/usr/bin/env bash
# Install what tests/test_web_page.py needs: Debian's chromium and Playwright for Python.
# Playwright drives the system browser (executable_path=/usr/bin/chromium), so
# `playwright install` (which downloads browsers) is never run.
#
# Usage: scripts/install-browser.sh            (uses ./venv's or PATH's python)
#        PYTHON=/work/venv/bin/python scripts/install-browser.sh
set -euo pipefail

PLAYWRIGHT_VERSION="1.65.2"
CHROMIUM="/usr/bin/chromium"

if [ -z "${PYTHON:-}" ]; then
  if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
    PYTHON="$VIRTUAL_ENV/bin/python"
  else
    PYTHON="$(command -v python3 || command -v python)"
  fi
fi

if [ ! -x "$CHROMIUM" ]; then
  echo "Installing chromium (apt)..."
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update
  # fonts-dejavu-core covers Arabic glyphs for readable screenshots.
  $SUDO apt-get install -y --no-install-recommends chromium fonts-dejavu-core
else
  echo "chromium already present: $CHROMIUM"
fi
"$CHROMIUM" --version || true

echo "Installing playwright==$PLAYWRIGHT_VERSION with $PYTHON..."
"$PYTHON" -m pip install "playwright==$PLAYWRIGHT_VERSION"
"$PYTHON" -c "import playwright; from importlib.metadata import version; print('playwright', version('playwright'))"
