#!/usr/bin/env bash
# Install Sanad into .venv, index the seed articles, answer a sample question,
# then start the service (chat page at http://127.0.0.1:8000/). Offline defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -e .
scripts/install-dictionary.sh || echo "(no English–Arabic dictionary: English answers will be weaker)"
.venv/bin/sanad index seeds
.venv/bin/sanad ask "من شارك في الاجتماع الأمني الذي استضافته القاهرة؟"
exec .venv/bin/sanad serve "$@"
