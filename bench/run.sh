#!/usr/bin/env bash
# The one command of the benchmarks: bash bench/run.sh [--quick] [run.py options]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q -e '.[bench]'
command -v wrk >/dev/null || { apt-get install -y -q wrk || { apt-get update -q && apt-get install -y -q wrk; }; }
# The PostgreSQL gateway needs the local server (BENCH_PG names another): started if it is down.
if [ -z "${BENCH_PG:-}" ] && command -v pg_isready >/dev/null && ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
ulimit -n 20000 2>/dev/null || true
exec .venv/bin/python bench/run.py "$@"
