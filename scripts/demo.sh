#!/usr/bin/env bash
# make demo: a dev broker on a free port, a mesh with alice and bob, two daemons, a DM from
# alice to bob through alice's socket, bob's SSE event and inbox row printed, everything
# stopped. Loopback only; everything lives in a temp dir that is removed at the end.
set -euo pipefail
BIN=${BIN:-target/debug/claudemeshd}
WORK=$(mktemp -d /tmp/claudemesh-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
say() { printf '\n== %s\n' "$*"; }
wait_for() { # wait_for <seconds> <command...>
  local n=$(( $1 * 10 )); shift
  for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "timed out waiting for: $*" >&2; return 1
}

say "dev broker (a stand-in for the claudemesh broker; development only)"
"$BIN" dev-broker --state "$WORK/broker" --listen 127.0.0.1:0 > "$WORK/broker.out" 2> "$WORK/broker.log" &
pids+=($!)
wait_for 10 grep -q dev_broker_started "$WORK/broker.out"
head -1 "$WORK/broker.out"
URL=$(sed -n 's/.*"url":"\([^"]*\)".*/\1/p' "$WORK/broker.out" | head -1)

say "dev mesh with alice and bob"
"$BIN" dev-mesh create --state "$WORK/broker" --broker-url "$URL" --members alice,bob --out "$WORK/out"

say "two daemons"
for who in alice bob; do
  CLAUDEMESH_CONFIG_DIR="$WORK/out/$who" "$BIN" up --tcp-port 0 2> "$WORK/$who.log" &
  pids+=($!)
done
for who in alice bob; do
  wait_for 15 sh -c "curl -sf --unix-socket '$WORK/out/$who/daemon/daemon.sock' http://localhost/v1/health | grep -q '\"broker_status\":\"open\"'"
  echo "$who: $(CLAUDEMESH_CONFIG_DIR="$WORK/out/$who" "$BIN" status | head -4 | tr '\n' ' ')"
done

say "bob listens on SSE"
curl -sN --unix-socket "$WORK/out/bob/daemon/daemon.sock" "http://localhost/v1/events?kinds=message" > "$WORK/bob.sse" &
pids+=($!)
sleep 0.3

say "alice sends a DM to bob through her socket"
curl -s --unix-socket "$WORK/out/alice/daemon/daemon.sock" -X POST http://localhost/v1/send \
  -d '{"to":"bob","message":"hello bob, end-to-end encrypted"}'
echo

wait_for 10 grep -q '^event: message' "$WORK/bob.sse"
say "bob's SSE event"
grep -A1 -m1 '^id:' "$WORK/bob.sse"; grep -m1 '^data:' "$WORK/bob.sse"

say "bob's inbox"
curl -s --unix-socket "$WORK/out/bob/daemon/daemon.sock" "http://localhost/v1/inbox?limit=1"
echo

say "alice's outbox row"
curl -s --unix-socket "$WORK/out/alice/daemon/daemon.sock" "http://localhost/v1/outbox?status=done&limit=1"
echo

say "stopping"
for who in alice bob; do CLAUDEMESH_CONFIG_DIR="$WORK/out/$who" "$BIN" down; done
echo "demo ok"
