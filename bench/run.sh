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
if [ -z "${BENCH_PG:-}" ] && command -v pg_isready >/dev/null; then
  scripts/start-postgres
fi
ulimit -n 20000 2>/dev/null || true
exec .venv/bin/python bench/run.py "$@"
