#!/usr/bin/env bash
# make demo: a dev broker (head profile) on a free port, a mesh with alice and bob, two daemons,
# a DM from alice to bob through alice's socket, bob's SSE event and inbox row printed; then an
# agent session registered on alice (its own keypair, a real child process as its pid) that bob
# sees as a peer and messages directly, shown in alice's session-scoped inbox; everything
# stopped. Loopback only; everything lives in a temp dir that is removed at the end.
set -euo pipefail
# The binary: $BIN (the Makefile passes it), else where cargo builds it (CARGO_TARGET_DIR and
# cargo config honoured, through `cargo metadata`).
if [ -z "${BIN:-}" ]; then
  target_dir=$(cargo metadata --format-version 1 --no-deps 2>/dev/null \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  BIN="${target_dir:-target}/debug/claudemeshd"
fi
# Before anything starts: the binary exists and runs, or one clear line and exit 1.
if [ ! -x "$BIN" ]; then
  echo "demo: no claudemeshd binary at $BIN; build it with: cargo build --bin claudemeshd (or run: make demo)" >&2
  exit 1
fi
version_rc=0
version_out=$("$BIN" --version 2>&1) || version_rc=$?
if [ "$version_rc" -ne 0 ]; then
  echo "demo: $BIN does not run (\`--version\` exited with status $version_rc)${version_out:+: $(printf '%s' "$version_out" | head -1)}" >&2
  exit 1
fi
WORK=$(mktemp -d /tmp/claudemesh-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
say() { printf '\n== %s\n' "$*"; }
# wait_for <seconds> <name> <pid> <stderr file> <command...>: polls the command until it
# succeeds; if the process <pid> exits meanwhile, says so at once with its last stderr lines.
wait_for() {
  local n=$(( $1 * 10 )) name=$2 pid=$3 log=$4; shift 4
  for _ in $(seq "$n"); do
    "$@" >/dev/null 2>&1 && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      local rc=0; wait "$pid" 2>/dev/null || rc=$?
      echo "demo: $name (pid $pid) exited with status $rc while the demo waited for it; last lines of its stderr ($log):" >&2
      tail -n 15 "$log" >&2 || true
      return 1
    fi
    sleep 0.1
  done
  echo "demo: timed out after $(( n / 10 )) s waiting for $name: $*; last lines of its stderr ($log):" >&2
  tail -n 15 "$log" >&2 || true
  return 1
}

say "dev broker (a stand-in for the claudemesh broker; development only)"
"$BIN" dev-broker --profile head --state "$WORK/broker" --listen 127.0.0.1:0 > "$WORK/broker.out" 2> "$WORK/broker.log" &
pids+=($!)
wait_for 10 "dev broker" "$!" "$WORK/broker.log" grep -q dev_broker_started "$WORK/broker.out"
head -1 "$WORK/broker.out"
URL=$(sed -n 's/.*"url":"\([^"]*\)".*/\1/p' "$WORK/broker.out" | head -1)

say "dev mesh with alice and bob"
"$BIN" dev-mesh create --state "$WORK/broker" --broker-url "$URL" --members alice,bob --out "$WORK/out"

say "two daemons"
declare -A daemon_pid
for who in alice bob; do
  CLAUDEMESH_CONFIG_DIR="$WORK/out/$who" "$BIN" up --tcp-port 0 2> "$WORK/$who.log" &
  pids+=($!)
  daemon_pid[$who]=$!
done
for who in alice bob; do
  wait_for 15 "$who's daemon" "${daemon_pid[$who]}" "$WORK/$who.log" sh -c "curl -sf --unix-socket '$WORK/out/$who/daemon/daemon.sock' http://localhost/v1/health | grep -q '\"broker_status\":\"open\"'"
  echo "$who: $(CLAUDEMESH_CONFIG_DIR="$WORK/out/$who" "$BIN" status | head -4 | tr '\n' ' ')"
done

say "bob listens on SSE"
curl -sN --unix-socket "$WORK/out/bob/daemon/daemon.sock" "http://localhost/v1/events?kinds=message" > "$WORK/bob.sse" 2> "$WORK/sse.err" &
pids+=($!)
sse_pid=$!
sleep 0.3

say "alice sends a DM to bob through her socket"
curl -s --unix-socket "$WORK/out/alice/daemon/daemon.sock" -X POST http://localhost/v1/send \
  -d '{"to":"bob","message":"hello bob, end-to-end encrypted"}'
echo

wait_for 10 "bob's SSE stream (curl)" "$sse_pid" "$WORK/sse.err" grep -q '^event: message' "$WORK/bob.sse"
say "bob's SSE event"
grep -A1 -m1 '^id:' "$WORK/bob.sse"; grep -m1 '^data:' "$WORK/bob.sse"

say "bob's inbox"
curl -s --unix-socket "$WORK/out/bob/daemon/daemon.sock" "http://localhost/v1/inbox?limit=1"
echo

say "alice's outbox row"
curl -s --unix-socket "$WORK/out/alice/daemon/daemon.sock" "http://localhost/v1/outbox?status=done&limit=1"
echo

say "alice registers an agent session: its own keypair, vouched for by her member key"
# What `claudemesh launch` does: a session keypair, an attestation signed with the member key,
# a registration with the daemon under a fresh token; a `sleep` stands in for the agent.
sleep 600 &
pids+=($!)
session_pid=$!
hex() { od -An -tx1 | tr -d ' \n'; }
openssl genpkey -algorithm ed25519 -out "$WORK/session.pem" 2>/dev/null
SESSION_SEED=$(openssl pkey -in "$WORK/session.pem" -outform DER | tail -c 32 | hex)
SESSION_PUB=$(openssl pkey -in "$WORK/session.pem" -pubout -outform DER | tail -c 32 | hex)
ALICE_CFG="$WORK/out/alice/config.json"
MESH=$(sed -n 's/.*"slug": *"\([^"]*\)".*/\1/p' "$ALICE_CFG" | head -1)
MEMBER_SECRET=$(sed -n 's/.*"secretKey": *"\([0-9a-f]*\)".*/\1/p' "$ALICE_CFG" | head -1)
MEMBER_PUB=$(sed -n 's/.*"pubkey": *"\([0-9a-f]*\)".*/\1/p' "$ALICE_CFG" | head -1)
# The member seed as a PKCS#8 key, to sign the attestation with openssl.
printf '302e020100300506032b657004220420%s' "${MEMBER_SECRET:0:64}" | xxd -r -p > "$WORK/member.der"
EXPIRES=$(( ($(date +%s) + 43200) * 1000 ))
printf 'claudemesh-session-attest|%s|%s|%s' "$MEMBER_PUB" "$SESSION_PUB" "$EXPIRES" > "$WORK/attest.txt"
ATTEST_SIG=$(openssl pkeyutl -sign -rawin -keyform DER -inkey "$WORK/member.der" -in "$WORK/attest.txt" | hex)
TOKEN=$(openssl rand -hex 32)
curl -s --unix-socket "$WORK/out/alice/daemon/daemon.sock" -X POST http://localhost/v1/sessions/register \
  -d "{\"token\":\"$TOKEN\",\"session_id\":\"demo-agent\",\"mesh\":\"$MESH\",\"display_name\":\"alice-agent\",\"pid\":$session_pid,\"cwd\":\"$WORK\",\"presence\":{\"session_pubkey\":\"$SESSION_PUB\",\"session_secret_key\":\"$SESSION_SEED$SESSION_PUB\",\"parent_attestation\":{\"session_pubkey\":\"$SESSION_PUB\",\"parent_member_pubkey\":\"$MEMBER_PUB\",\"expires_at\":$EXPIRES,\"signature\":\"$ATTEST_SIG\"}}}"
echo
SESSION_AUTH="Authorization: ClaudeMesh-Session $TOKEN"
wait_for 15 "the session's own presence" "${daemon_pid[alice]}" "$WORK/alice.log" sh -c "curl -sf --unix-socket '$WORK/out/alice/daemon/daemon.sock' -H '$SESSION_AUTH' http://localhost/v1/sessions/me | grep -q '\"presence_status\":\"open\"'"
CLAUDEMESH_CONFIG_DIR="$WORK/out/alice" "$BIN" sessions

say "bob sees the session as a peer of its own"
wait_for 10 "bob's peer list" "${daemon_pid[bob]}" "$WORK/bob.log" sh -c "CLAUDEMESH_CONFIG_DIR='$WORK/out/bob' '$BIN' --json peers | grep -q '$SESSION_PUB'"
CLAUDEMESH_CONFIG_DIR="$WORK/out/bob" "$BIN" peers

say "bob messages the session directly (to its pubkey)"
curl -s --unix-socket "$WORK/out/bob/daemon/daemon.sock" -X POST http://localhost/v1/send \
  -d "{\"to\":\"$SESSION_PUB\",\"message\":\"hello alice's agent session\"}"
echo

say "alice's session-scoped inbox (what the session sees)"
wait_for 10 "the session's DM" "${daemon_pid[alice]}" "$WORK/alice.log" sh -c "curl -sf --unix-socket '$WORK/out/alice/daemon/daemon.sock' -H '$SESSION_AUTH' http://localhost/v1/inbox | grep -q 'agent session'"
curl -s --unix-socket "$WORK/out/alice/daemon/daemon.sock" -H "$SESSION_AUTH" "http://localhost/v1/inbox?limit=1"
echo

say "stopping"
for who in alice bob; do CLAUDEMESH_CONFIG_DIR="$WORK/out/$who" "$BIN" down; done
echo "demo ok"
