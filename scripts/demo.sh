#!/usr/bin/env bash
# `make demo`: a server on a fresh SQLite file, fed with a real Grubhub
# instance at an accelerated clock. Watch it from another terminal with
#   .venv/bin/ordercast watch --all
# Settings: SPEED (default 60: one simulated minute per second), INSTANCE,
# PORT (default 8000), LIMIT (orders to replay; default all). The server keeps
# running after the replay, until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

speed=${SPEED:-60}
instance=${INSTANCE:-../shared/data/grubhub-mdrp/0o100t100s1p100}
port=${PORT:-8000}
bin=.venv/bin

if [ ! -d "$instance" ]; then
  echo "no Grubhub instance at $instance (see ../shared/data/grubhub-mdrp/README.md)" >&2
  exit 1
fi

mkdir -p run
rm -f run/demo.db run/demo.db-wal run/demo.db-shm
export ORDERCAST_DATABASE_URL=sqlite:///run/demo.db
# Deadlines are wall-clock; scale DESIGN.md's defaults (5 and 10 minutes) to
# the replay's clock so that they fire as they would on a real day.
export ORDERCAST_RESTAURANT_TIMEOUT_S=$("$bin/python" -c "print(300 / $speed)")
export ORDERCAST_DISPATCH_TIMEOUT_S=$("$bin/python" -c "print(600 / $speed)")

"$bin/ordercast" serve --port "$port" >run/server.log 2>&1 &
server=$!
stop_server() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
}
trap stop_server EXIT
trap 'echo; echo "stopping"; exit 0' INT TERM

for _ in $(seq 100); do
  if "$bin/python" -c "import httpx,sys; httpx.get('http://127.0.0.1:$port/healthz').raise_for_status()" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$server" 2>/dev/null; then
    cat run/server.log >&2
    exit 1
  fi
  sleep 0.1
done

cat <<EOT
ordercast is serving on http://127.0.0.1:$port (log: run/server.log, store: run/demo.db)
Watch every order live, from another terminal:
  $bin/ordercast watch --all --pretty --url http://127.0.0.1:$port
or one order, as its customer's app receives it:
  $bin/ordercast watch ORDER_ID --url http://127.0.0.1:$port
The ops dashboard, in a browser:
  http://127.0.0.1:$port/ops?token=$("$bin/ordercast" token --role ops --sub demo-ops)
A customer's tracking page: /track/ORDER_ID?token=\$(.venv/bin/ordercast token --role customer --sub CUSTOMER_ID)
OpenAPI: http://127.0.0.1:$port/docs

EOT
args=(--url "http://127.0.0.1:$port" --instance "$instance" --speed "$speed")
if [ -n "${LIMIT:-}" ]; then args+=(--limit "$LIMIT"); fi
"$bin/ordercast" replay "${args[@]}"
echo
echo "replay done; the server keeps serving its orders until Ctrl-C"
wait "$server"
