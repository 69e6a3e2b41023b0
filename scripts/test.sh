#!/usr/bin/env bash
# Everything CI checks: install (with test extras, the headless browser, the English–Arabic dictionary and
# PostgreSQL for the shared-state tests), the pytest suite, then the release eval on the seeds with its thresholds.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e '.[dev]'
PYTHON=.venv/bin/python scripts/install-browser.sh
scripts/install-dictionary.sh
scripts/install-postgres.sh
.venv/bin/python -m pytest "$@"
.venv/bin/sanad eval --split test --data-dir "$(mktemp -d)" --report artifacts/eval
