#!/usr/bin/env bash
# Install PostgreSQL's server from Debian's packages, for the tests that run the service's state on it
# (tests/postgres.py starts a throwaway server in a temporary folder; nothing is started or enabled here).
# Without it those tests skip, saying why; the SQLite default needs nothing.
#
# Usage: scripts/install-postgres.sh          (needs apt-get; uses sudo when not root)
set -euo pipefail

if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  echo "PostgreSQL server binaries already present"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "No apt-get here: install a PostgreSQL server (initdb, pg_ctl) to run the PostgreSQL tests" >&2
  exit 0
fi
"$(dirname "$0")/apt-install.sh" postgresql || echo "PostgreSQL could not be installed: its tests will skip" >&2
