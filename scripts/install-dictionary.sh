#!/usr/bin/env bash
# Install FreeDict's English–Arabic and Arabic–English dictionaries (Debian packages, GPL-2+ data, about
# 5 MB): with them, the offline answerer finds an English question's words in Arabic sentences
# (rag/bilingual.py). Sanad works without them; English answers are then weaker (docs/evaluation.md).
#
# Usage: scripts/install-dictionary.sh          (needs apt-get; uses sudo when not root)
set -euo pipefail

PACKAGES="dict-freedict-eng-ara dict-freedict-ara-eng"
if [ -f /usr/share/dictd/freedict-eng-ara.index ] && [ -f /usr/share/dictd/freedict-ara-eng.index ]; then
  echo "FreeDict English–Arabic dictionaries already present"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "No apt-get here: install FreeDict eng-ara/ara-eng (dictd format) and set SANAD_ANSWER__DICTIONARY" >&2
  exit 1
fi
"$(dirname "$0")/apt-install.sh" $PACKAGES
