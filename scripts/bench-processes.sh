#!/usr/bin/env bash
# `sanad bench processes` on this machine: a throwaway PostgreSQL cluster (Debian's server, as the tests start it)
# and the project's fake Qdrant server (HTTP over qdrant-client's local mode: no Qdrant server installs here), then
# the bench; both servers are stopped after it. Arguments go to the bench (e.g. --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
QPORT=$($PY -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
$PY -c "
import signal
from tests.fakes.qdrant_server import FakeQdrant
FakeQdrant(port=$QPORT).start()
signal.sigwait([signal.SIGTERM])" &
QPID=$!
ROOT=$(mktemp)
PGURL=$($PY -c "
from tests.postgres import PostgresServer, new_database
pg = PostgresServer(); pg.start(); open('$ROOT', 'w').write(str(pg.root)); print(new_database(pg.url))")
cleanup() {
  kill "$QPID" 2>/dev/null || true
  PGROOT=$(cat "$ROOT"); rm -f "$ROOT"
  if [ "$(id -u)" -eq 0 ]; then AS="runuser -u postgres --"; else AS=""; fi
  $AS "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)/pg_ctl" -D "$PGROOT/data" -m immediate stop >/dev/null || true
  rm -rf "$PGROOT"
}
trap cleanup EXIT
sleep 2
OMP_NUM_THREADS=1 .venv/bin/sanad bench processes --database-url "$PGURL" --qdrant-url "http://127.0.0.1:$QPORT" "$@"
