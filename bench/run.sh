#!/usr/bin/env bash
# Benchmarks of docker-offload against the direct engine and against SSH (issue 6).
#
#   sudo bench/run.sh            # ~5 minutes; rewrites the results part of docs/benchmarks.md
#
# Everything it needs it starts itself and removes at the end, whatever happens: a build of the
# programs (BUILD_DIR, default build-bench, RelWithDebInfo), a "direct" dockerd of its own (own
# data root, exec root, socket, pidfile, bridge), an offload session on the local account in a
# DOCKER_CONFIG of its own (own address pool), and sshd on 127.0.0.1:2222 with a throwaway host
# key, used by `docker -H ssh://` and `ssh -L`. For the far-away runner (scenario 5): a second
# offload-runner served by hand, a second DOCKER_CONFIG with a remote account on it, and two
# offload-bench-wan-relay links (one in front of that runner, one in front of sshd). Each
# comparison is measured in the same run, the variants interleaved round by round. Not part of
# the test suite.
#
# Knobs (environment): RUNS_API (15), RUNS_RUN (7), STREAM_MIB (1024), RUNS_STREAM (3),
# RR_CONNS (100), RR_ROUNDS (50), RR_WARMUP (1: untimed round trips per connection first),
# CONNECTS (2000: new connections per variant, each one round trip), CONNECTS_PARALLEL (4),
# BULK_MIB (500; 0 skips the save|load scenario),
# BUILD_CTX_MIB (200; 0 skips docker build), RUNS_BUILD (3), PERF_DIR (unset: no profile),
# BENCH_LOG_LEVEL (info; offloadd's and the local runner's), KEEP_WORKDIR (unset: removed),
# HOLD (unset; 1: wait before the throughput runs, with the sinks up, until $W/hold is removed),
# FAR (1; 0 skips the far-away runner), FAR_DELAY_MS (20, each way), FAR_RATE_MBIT (200),
# FAR_STREAM_MIB (200), RUNS_FAR (7), RUNS_FAR_STREAM (3),
# SSH_PORT (2222), FAR_DATA_PORT (2223: the far runner's data channel), DATA_CHANNEL (2: the
# multiplexed data channel, ODC3 or ODC2 as the runner speaks; 1: ODC1, a TLS connection per
# forwarded connection (offloadd's ports.multiplexDataChannel false); 0: ports.dataChannel false,
# forwarded ports over gRPC), OUT (docs/benchmarks.md).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
OUT=${OUT:-$ROOT/docs/benchmarks.md}
RUNS_API=${RUNS_API:-15}
RUNS_RUN=${RUNS_RUN:-7}
STREAM_MIB=${STREAM_MIB:-1024}
RUNS_STREAM=${RUNS_STREAM:-3}
RR_CONNS=${RR_CONNS:-100}
RR_ROUNDS=${RR_ROUNDS:-50}
RR_WARMUP=${RR_WARMUP:-1}
CONNECTS=${CONNECTS:-2000}
CONNECTS_PARALLEL=${CONNECTS_PARALLEL:-4}
BULK_MIB=${BULK_MIB:-500}
BUILD_CTX_MIB=${BUILD_CTX_MIB:-200}
RUNS_BUILD=${RUNS_BUILD:-3}
FAR=${FAR:-1}
FAR_DELAY_MS=${FAR_DELAY_MS:-20}
FAR_RATE_MBIT=${FAR_RATE_MBIT:-200}
FAR_STREAM_MIB=${FAR_STREAM_MIB:-200}
RUNS_FAR=${RUNS_FAR:-7}
RUNS_FAR_STREAM=${RUNS_FAR_STREAM:-3}
SSH_PORT=${SSH_PORT:-2222}
FAR_DATA_PORT=${FAR_DATA_PORT:-2223}
DATA_CHANNEL=${DATA_CHANNEL:-2}
IMAGE=offload-bench/busybox:latest
BRIDGE=oflbench0
BRIDGE_CIDR=172.30.97.1/24
EXEC_ROOT=/run/offload-bench-direct
FAR_RUN_DIR=/run/offload-bench-far
FAR_POOL=10.234.0.0/24

say() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (the local runner and the direct dockerd need it)"
command -v dockerd >/dev/null || die "dockerd is missing: apt-get install docker.io"
[ -x /usr/bin/busybox ] || die "busybox-static is missing: apt-get install busybox-static"
command -v jq >/dev/null || die "jq is missing: apt-get install jq"
if [ ! -x /usr/sbin/sshd ]; then
  say "installing openssh-server for the SSH baselines"
  DEBIAN_FRONTEND=noninteractive apt-get install -y openssh-server >/dev/null
fi

# ---- build ---------------------------------------------------------------------------------
say "building in $BUILD_DIR"
[ -n "${SKIP_BUILD:-}" ] || [ -f "$BUILD_DIR/CMakeCache.txt" ] ||
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
[ -n "${SKIP_BUILD:-}" ] ||
  cmake --build "$BUILD_DIR" -j"${JOBS:-1}" --target docker-offload offloadd offload-runner \
    offload-bench offload-bench-peer offload-bench-wan-relay >/dev/null
BIN=${BIN_DIR:-$BUILD_DIR/bin}
BENCH=$BIN/offload-bench

# ---- everything of this run lives in $W, and goes at the end ----------------------------------
W=$(mktemp -d /tmp/offload-bench-XXXXXX)
chmod 755 "$W"
export DOCKER_CONFIG=$W/docker
unset DOCKER_HOST DOCKER_CONTEXT
DIRECT_PID= SSHD_PID= MADE_RUN_SSHD= STARTED= FORWARDS=()
FAR_CONFIG=$W/far/docker FAR_RUNNER_PID= FAR_STARTED= RELAYS=() SAMPLER= PERFS=()
DIRECT_SOCK=$W/direct/docker.sock

cleanup() {
  set +e
  say "cleaning up"
  # An interrupted scenario leaves its footprint sampler polling processes that go away now.
  if [ -n "$SAMPLER" ]; then kill "$SAMPLER" 2>/dev/null; wait "$SAMPLER" 2>/dev/null; fi
  for p in "${PERFS[@]}"; do kill -INT "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  for p in "${FORWARDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  # The far session first, while its runner and the relay in front of it still answer.
  if [ -n "$FAR_STARTED" ]; then DOCKER_CONFIG=$FAR_CONFIG docker offload stop --force >/dev/null 2>&1; fi
  if [ -n "$STARTED" ]; then docker offload stop --force >/dev/null 2>&1; fi
  local p
  for p in "$DOCKER_CONFIG/offload/offloadd.pid" "$FAR_CONFIG/offload/offloadd.pid"; do
    [ -f "$p" ] || continue
    p=$(cat "$p")
    kill "$p" 2>/dev/null; for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
  done
  if [ -n "$FAR_RUNNER_PID" ]; then
    # SIGTERM: the runner destroys its sessions (engines, namespaces) before it exits.
    kill "$FAR_RUNNER_PID" 2>/dev/null; wait "$FAR_RUNNER_PID" 2>/dev/null
    unmount_under "$FAR_RUN_DIR"; rm -rf "$FAR_RUN_DIR"
  fi
  for p in "${RELAYS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  if [ -n "$SSHD_PID" ]; then kill "$SSHD_PID" 2>/dev/null; wait "$SSHD_PID" 2>/dev/null; fi
  [ -n "$MADE_RUN_SSHD" ] && rmdir /run/sshd 2>/dev/null
  if [ -n "$DIRECT_PID" ]; then
    docker -H "unix://$DIRECT_SOCK" rm -f $(docker -H "unix://$DIRECT_SOCK" ps -aq 2>/dev/null) >/dev/null 2>&1
    kill "$DIRECT_PID" 2>/dev/null; wait "$DIRECT_PID" 2>/dev/null
  fi
  umount -R "$EXEC_ROOT" 2>/dev/null; rm -rf "$EXEC_ROOT"
  ip link del "$BRIDGE" 2>/dev/null
  # Whatever a runner that did not stop cleanly left mounted must not be deleted through.
  unmount_under "$W"
  [ -n "${KEEP_WORKDIR:-}" ] && echo "kept $W" >&2 || rm -rf "$W"
}
unmount_under() {
  awk -v d="$1/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

D="docker -H unix://$DIRECT_SOCK"
O="docker --context docker-offload"
S="docker -H ssh://root@127.0.0.1:$SSH_PORT"

wait_until() {  # SECONDS command...
  local limit=$1; shift
  for _ in $(seq $((limit * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  "$@"
}

# ---- the direct engine -------------------------------------------------------------------
say "starting the direct dockerd"
mkdir -p "$W/direct"
# A bridge of its own: the default docker0 may belong to another dockerd on this machine.
ip link add "$BRIDGE" type bridge
ip addr add "$BRIDGE_CIDR" dev "$BRIDGE"
ip link set "$BRIDGE" up
dockerd --data-root "$W/direct/data" --exec-root "$EXEC_ROOT" -H "unix://$DIRECT_SOCK" \
  --pidfile "$W/direct/docker.pid" -b "$BRIDGE" >"$W/direct/dockerd.log" 2>&1 &
DIRECT_PID=$!
wait_until 60 $D version || die "the direct dockerd did not start: $(tail -5 "$W/direct/dockerd.log")"

# ---- sshd on loopback ----------------------------------------------------------------------
say "starting sshd on 127.0.0.1:$SSH_PORT"
mkdir -p "$W/ssh" "$W/bin"
ssh-keygen -q -t ed25519 -N '' -f "$W/ssh/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$W/ssh/id"
cp "$W/ssh/id.pub" "$W/ssh/authorized_keys"
cat >"$W/ssh/sshd_config" <<EOF
HostKey $W/ssh/host_key
PidFile $W/ssh/sshd.pid
AuthorizedKeysFile $W/ssh/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding yes
# docker -H ssh:// runs "docker system dial-stdio" here: point it at the direct engine.
SetEnv DOCKER_HOST=unix://$DIRECT_SOCK
EOF
cat >"$W/ssh/config" <<EOF
Host 127.0.0.1
  Port $SSH_PORT
  User root
  IdentityFile $W/ssh/id
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
EOF
# ssh reads ~/.ssh/config from the passwd home, not $HOME; the docker CLI runs `ssh` from PATH,
# so a wrapper first in PATH gives it our config without touching root's.
printf '#!/bin/sh\nexec /usr/bin/ssh -F %s "$@"\n' "$W/ssh/config" >"$W/bin/ssh"
chmod 755 "$W/bin/ssh"
export PATH=$W/bin:$PATH
[ -d /run/sshd ] || { mkdir -p /run/sshd; MADE_RUN_SSHD=1; }
/usr/sbin/sshd -D -e -f "$W/ssh/sshd_config" -p "$SSH_PORT" -o ListenAddress=127.0.0.1 \
  2>"$W/ssh/sshd.log" &
SSHD_PID=$!
wait_until 20 $S version || die "docker over ssh does not work: $(tail -5 "$W/ssh/sshd.log")"

# ---- the offload session -------------------------------------------------------------------
say "starting the offload session"
mkdir -p "$DOCKER_CONFIG/cli-plugins" "$DOCKER_CONFIG/offload"
ln -s "$BIN/docker-offload" "$DOCKER_CONFIG/cli-plugins/docker-offload"
echo '{}' >"$DOCKER_CONFIG/config.json"
jq -n --arg level "${BENCH_LOG_LEVEL:-info}" --argjson data "$DATA_CHANNEL" \
  '{version: 1, idleTimeout: "0", logLevel: $level, local: {addressPool: "10.232.0.0/24"},
    ports: {dataChannel: ($data != 0), multiplexDataChannel: ($data >= 2)}}' \
  >"$DOCKER_CONFIG/offload/config.json"
STARTED=1
docker offload start </dev/null >/dev/null || die "docker offload start failed"
OFFLOADD_PID=$(cat "$DOCKER_CONFIG/offload/offloadd.pid")
RUNNER_PID=$(pgrep -f "offload-runner serve .*$DOCKER_CONFIG/offload" | head -1)
[ -n "$RUNNER_PID" ] || die "no offload-runner process found"

say "importing the benchmark image into both engines"
mkdir -p "$W/rootfs/bin" "$W/rootfs/tmp" "$W/rootfs/etc"
cp /usr/bin/busybox "$W/rootfs/bin/busybox"
cp "$BIN/offload-bench-peer" "$W/rootfs/bin/offload-bench-peer"
for n in $(/usr/bin/busybox --list); do [ "$n" = busybox ] || ln -s busybox "$W/rootfs/bin/$n"; done
tar -C "$W/rootfs" -c . >"$W/rootfs.tar"
$D import - "$IMAGE" <"$W/rootfs.tar" >/dev/null
$O import - "$IMAGE" <"$W/rootfs.tar" >/dev/null

mkdir -p "$W/results"
R=$W/results

# /proc/<pid>/status VmRSS (KiB) and utime+stime (seconds).
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
cpu_s() {
  local ticks; ticks=$(getconf CLK_TCK)
  # Fields after the ")" of comm: utime and stime are the 12th and 13th.
  sed 's/.*) //' "/proc/$1/stat" | awk -v t="$ticks" '{printf "%.3f", ($12 + $13) / t}'
}
# Samples the peak RSS of both processes every 100 ms until $R/$1.stop appears.
sample_peak() {
  local name=$1 po=0 pr=0 v
  while [ ! -e "$R/$name.stop" ]; do
    v=$(rss_kib "$FP_OFFLOADD"); [ "$v" -gt "$po" ] && po=$v
    v=$(rss_kib "$FP_RUNNER"); [ "$v" -gt "$pr" ] && pr=$v
    sleep 0.1
  done
  echo "{\"offloadd_peak_rss_kib\": $po, \"runner_peak_rss_kib\": $pr}" >"$R/$name.peak.json"
}
# footprint_begin NAME [OFFLOADD_PID RUNNER_PID]: the local session's processes by default.
footprint_begin() {
  FP_OFFLOADD=${2:-$OFFLOADD_PID} FP_RUNNER=${3:-$RUNNER_PID}
  echo "{\"offloadd_cpu_s\": $(cpu_s "$FP_OFFLOADD"), \"runner_cpu_s\": $(cpu_s "$FP_RUNNER")}" \
    >"$R/$1.cpu0.json"
  sample_peak "$1" &
  SAMPLER=$!
}
footprint_end() {
  touch "$R/$1.stop"; wait "$SAMPLER"; SAMPLER=
  jq -n --slurpfile c0 "$R/$1.cpu0.json" --slurpfile p "$R/$1.peak.json" \
    --argjson oc "$(cpu_s "$FP_OFFLOADD")" --argjson rc "$(cpu_s "$FP_RUNNER")" \
    '$p[0] + {offloadd_cpu_s: ($oc - $c0[0].offloadd_cpu_s), runner_cpu_s: ($rc - $c0[0].runner_cpu_s)}' \
    >"$R/footprint-$1.json"
}

# PERF_DIR=DIR: `perf record` (call graphs: PERF_CALL_GRAPH, default fp; dwarf,16384 sees through
# libraries built without frame pointers) of offloadd and the runner during scenarios 2 and 3,
# into DIR/<scenario>-<program>.data; with PERF_EVENTS=LIST, `perf stat -e LIST` instead (counts
# of system calls, context switches, wake-ups), into DIR/<scenario>-<program>.stat. See
# "Profiling" in docs/benchmarks.md.
perf_begin() {
  [ -n "${PERF_DIR:-}" ] || return 0
  mkdir -p "$PERF_DIR"
  local who
  for who in "offloadd:$OFFLOADD_PID" "runner:$RUNNER_PID"; do
    if [ -n "${PERF_EVENTS:-}" ]; then
      perf stat -e "$PERF_EVENTS" -p "${who#*:}" -o "$PERF_DIR/$1-${who%%:*}.stat" >/dev/null 2>&1 &
    else
      perf record -q --call-graph "${PERF_CALL_GRAPH:-fp}" -F 999 -p "${who#*:}" \
        -o "$PERF_DIR/$1-${who%%:*}.data" >/dev/null 2>&1 &
    fi
    PERFS+=($!)
  done
  sleep 1  # perf attaches before the clock starts
}
perf_end() {
  local p
  for p in "${PERFS[@]}"; do kill -INT "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done
  PERFS=()
}

# ---- 1. API latency ------------------------------------------------------------------------
say "1. API latency"
$O run --rm "$IMAGE" true && $D run --rm "$IMAGE" true   # first runs set up the engines' state
sleep 2
jq -n --argjson o "$(rss_kib "$OFFLOADD_PID")" --argjson r "$(rss_kib "$RUNNER_PID")" \
  '{offloadd_rss_kib: $o, runner_rss_kib: $r}' >"$R/footprint-idle.json"
for verb in version ps; do
  $BENCH commands --runs "$RUNS_API" --warmup 2 direct "$D $verb" offload "$O $verb" \
    ssh "$S $verb" >"$R/api-$verb.json"
done
$BENCH commands --runs "$RUNS_RUN" --warmup 1 direct "$D run --rm $IMAGE true" \
  offload "$O run --rm $IMAGE true" ssh "$S run --rm $IMAGE true" >"$R/api-run.json"

# ---- 2. port-forward throughput ------------------------------------------------------------
say "2. port-forward throughput"
$D run -d --name sink -p 127.0.0.1:19001:9000 "$IMAGE" offload-bench-peer sink 9000 >/dev/null
$O run -d --name sink -p 19003:9000 "$IMAGE" offload-bench-peer sink 9000 >/dev/null
ssh -N -L "127.0.0.1:19002:127.0.0.1:19001" 127.0.0.1 &
FORWARDS+=($!)
for p in 19001 19002 19003; do $BENCH wait sink $p --timeout 30 || die "sink on $p"; done
if [ -n "${HOLD:-}" ]; then
  # HOLD=1: keep the sinks up for profiling by hand (docs/benchmarks.md, "Profiling").
  touch "$W/hold"
  echo "bench: holding; sinks on 19001 (direct), 19003 (offload), 19002 (ssh); offloadd $OFFLOADD_PID, runner $RUNNER_PID; rm $W/hold to go on" >&2
  while [ -e "$W/hold" ]; do sleep 1; done
fi
footprint_begin stream
perf_begin throughput
$BENCH stream --bytes "${STREAM_MIB}M" --streams 1 --runs "$RUNS_STREAM" \
  direct 19001 offload 19003 ssh 19002 >"$R/stream-1.json"
$BENCH stream --bytes "${STREAM_MIB}M" --streams 16 --runs "$RUNS_STREAM" \
  direct 19001 offload 19003 ssh 19002 >"$R/stream-16.json"
perf_end
footprint_end stream

# ---- 3. request/response under concurrency (and the footprint with 100 streams) -------------
say "3. $RR_CONNS concurrent request/response connections"
$D run -d --name echo -p 127.0.0.1:19011:9000 "$IMAGE" offload-bench-peer echo 9000 >/dev/null
$O run -d --name echo -p 19013:9000 "$IMAGE" offload-bench-peer echo 9000 >/dev/null
ssh -N -L "127.0.0.1:19012:127.0.0.1:19011" 127.0.0.1 &
FORWARDS+=($!)
for p in 19011 19012 19013; do $BENCH wait echo $p --timeout 30 || die "echo on $p"; done
footprint_begin rr
perf_begin rr
$BENCH rr --conns "$RR_CONNS" --rounds "$RR_ROUNDS" --warmup "$RR_WARMUP" --size 64 \
  direct 19011 offload 19013 ssh 19012 >"$R/rr.json"
perf_end
footprint_end rr
# A connection per request: connect, one round trip, close (the proxies' dial is in the clock).
$BENCH connects --count "$CONNECTS" --parallel "$CONNECTS_PARALLEL" --rounds 5 --size 64 \
  direct 19011 offload 19013 ssh 19012 >"$R/connects.json"

# ---- 4. bulk API transfer: docker save | docker load -----------------------------------------
if [ "$BULK_MIB" -gt 0 ]; then
  say "4. docker save | docker load of a ${BULK_MIB} MiB image"
  mkdir -p "$W/bulk"
  head -c "$((BULK_MIB * 1048576))" /dev/urandom >"$W/bulk/blob"
  # The image is made locally and moved into each engine with one load, outside the clock.
  printf 'FROM %s\nCOPY blob /blob\n' "$IMAGE" >"$W/bulk/Dockerfile"
  $D build -q -t offload-bench/bulk "$W/bulk" >/dev/null
  $D save -o "$W/bulk.tar" offload-bench/bulk
  rm -f "$W/bulk/blob"
  $O load -q -i "$W/bulk.tar" >/dev/null
  # Each round: save to a file, remove, load it back (the load must store it again).
  $BENCH commands --runs 3 --warmup 0 \
    direct "$D save -o $W/d.tar offload-bench/bulk" \
    offload "$O save -o $W/o.tar offload-bench/bulk" >"$R/bulk-save.json"
  $BENCH commands --runs 3 --warmup 0 \
    direct "$D rmi -f offload-bench/bulk && $D load -q -i $W/bulk.tar" \
    offload "$O rmi -f offload-bench/bulk && $O load -q -i $W/bulk.tar" >"$R/bulk-load.json"
  rm -f "$W/d.tar" "$W/o.tar" "$W/bulk.tar"
fi

# ---- 4b. docker build with a large context -----------------------------------------------------
if [ "$BUILD_CTX_MIB" -gt 0 ]; then
  say "4b. docker build with a ${BUILD_CTX_MIB} MiB context"
  mkdir -p "$W/ctx"
  head -c "$((BUILD_CTX_MIB * 1048576))" /dev/urandom >"$W/ctx/blob"
  printf 'FROM %s\nCOPY blob /blob\n' "$IMAGE" >"$W/ctx/Dockerfile"
  # The classic builder (there is no buildx here, and dockerd 20.10 does not enable BuildKit):
  # the CLI sends the whole context as one tar in the body of POST /build, which is the transfer
  # to measure. --no-cache: every round transfers, unpacks and commits the layer again.
  $BENCH commands --runs "$RUNS_BUILD" --warmup 0 \
    direct "DOCKER_BUILDKIT=0 $D build -q --no-cache -t offload-bench/ctx $W/ctx" \
    offload "DOCKER_BUILDKIT=0 $O build -q --no-cache -t offload-bench/ctx $W/ctx" \
    >"$R/build.json"
  rm -rf "$W/ctx"
fi

# ---- 5. a far-away runner: the same link in front of offload and of ssh -------------------------
# start_relay NAME TARGET_PORT: a WAN link in front of 127.0.0.1:TARGET_PORT; its port goes to
# RELAY_PORT (not printed: a $(...) subshell would lose the pid that the cleanup needs).
start_relay() {
  "$BIN/offload-bench-wan-relay" --listen 127.0.0.1:0 --target "127.0.0.1:$2" \
    --delay-ms "$FAR_DELAY_MS" --rate-mbit "$FAR_RATE_MBIT" >"$W/far/$1.out" 2>&1 &
  RELAYS+=($!)
  wait_until 10 grep -q '^listening on' "$W/far/$1.out" ||
    die "the $1 relay did not start: $(cat "$W/far/$1.out")"
  RELAY_PORT=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\),.*/\1/p' "$W/far/$1.out")
}

if [ "$FAR" != 0 ]; then
  say "5. far-away runner: ${FAR_DELAY_MS} ms each way, ${FAR_RATE_MBIT} Mbit/s"
  mkdir -p "$W/far" "$FAR_CONFIG/cli-plugins" "$FAR_CONFIG/offload"
  # A runner served by hand, as on a remote machine: its own state, run dir and address pool,
  # so that nothing it does meets the local session's.
  FAR_TOKEN=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
  echo "far:$FAR_TOKEN" >"$W/far/tokens"
  # Its data channel (forwarded ports) crosses the same link: a relay of its own in front of a
  # fixed data port, announced to the client instead of the port the runner listens on.
  start_relay data "$FAR_DATA_PORT"; DATA_RELAY=$RELAY_PORT
  "$BIN/offload-runner" serve --listen 127.0.0.1:0 --token-file "$W/far/tokens" \
    --data-listen "127.0.0.1:$FAR_DATA_PORT" --data-advertise-port "$DATA_RELAY" \
    --state-dir "$W/far/state" --run-dir "$FAR_RUN_DIR" --address-pool "$FAR_POOL" \
    --ready-file "$W/far/ready.json" --log-file "$W/far/runner.log" \
    >"$W/far/runner.stderr" 2>&1 &
  FAR_RUNNER_PID=$!
  wait_until 30 test -s "$W/far/ready.json" >/dev/null ||
    die "the far runner did not start: $(tail -5 "$W/far/runner.stderr" "$W/far/runner.log")"
  FAR_RUNNER_PORT=$(jq -r .address "$W/far/ready.json" | sed 's/.*://')
  FAR_FINGERPRINT=$(jq -r .fingerprint "$W/far/ready.json")
  start_relay runner "$FAR_RUNNER_PORT"; RUNNER_RELAY=$RELAY_PORT
  start_relay ssh "$SSH_PORT"; SSH_RELAY=$RELAY_PORT

  ln -s "$BIN/docker-offload" "$FAR_CONFIG/cli-plugins/docker-offload"
  echo '{}' >"$FAR_CONFIG/config.json"
  (umask 077; echo "$FAR_TOKEN" >"$FAR_CONFIG/offload/far.token")
  jq -n --arg address "127.0.0.1:$RUNNER_RELAY" --arg fp "$FAR_FINGERPRINT" \
    --argjson data "$DATA_CHANNEL" \
    '{version: 1, idleTimeout: "0", defaultAccount: "far", ports: {dataChannel: ($data != 0), multiplexDataChannel: ($data >= 2)},
      accounts: {far: {type: "remote", address: $address, tokenFile: "far.token", fingerprint: $fp}}}' \
    >"$FAR_CONFIG/offload/config.json"
  FAR_STARTED=1
  DOCKER_CONFIG=$FAR_CONFIG docker offload start </dev/null >/dev/null ||
    die "docker offload start on the far runner failed: $(tail -5 "$W/far/runner.log")"
  FAR_OFFLOADD_PID=$(cat "$FAR_CONFIG/offload/offloadd.pid")
  F="env DOCKER_CONFIG=$FAR_CONFIG docker --context docker-offload"
  FS="docker -H ssh://root@127.0.0.1:$SSH_RELAY"
  $F import - "$IMAGE" <"$W/rootfs.tar" >/dev/null
  $F run --rm "$IMAGE" true && $FS run --rm "$IMAGE" true

  $BENCH commands --runs "$RUNS_FAR" --warmup 1 \
    offload "$F run --rm $IMAGE true" ssh "$FS run --rm $IMAGE true" >"$R/far-run.json"

  # Time to the first byte of `docker logs -f` on a container that printed its line already.
  $D run -d --name talker "$IMAGE" sh -c 'echo ready; exec sleep 1000000' >/dev/null
  $F run -d --name talker "$IMAGE" sh -c 'echo ready; exec sleep 1000000' >/dev/null
  wait_until 30 sh -c "$D logs talker | grep -q ready && $F logs talker | grep -q ready" ||
    die "the talker containers printed nothing"
  $BENCH ttfb --runs "$RUNS_FAR" --warmup 1 \
    offload "$F logs -f talker" ssh "$FS logs -f talker" >"$R/far-logs.json"

  # One stream through a forwarded port: the far session's, and `ssh -L` over the ssh link to
  # the direct engine's sink of scenario 2.
  $F run -d --name sink -p 19023:9000 "$IMAGE" offload-bench-peer sink 9000 >/dev/null
  ssh -N -p "$SSH_RELAY" -L "127.0.0.1:19022:127.0.0.1:19001" 127.0.0.1 &
  FORWARDS+=($!)
  for p in 19022 19023; do $BENCH wait sink $p --timeout 60 || die "far sink on $p"; done
  footprint_begin far "$FAR_OFFLOADD_PID" "$FAR_RUNNER_PID"
  $BENCH stream --bytes "${FAR_STREAM_MIB}M" --streams 1 --runs "$RUNS_FAR_STREAM" \
    offload 19023 ssh 19022 >"$R/far-stream.json"
  footprint_end far
fi

# ---- report ----------------------------------------------------------------------------------
say "writing $OUT"
DOCKER_VERSION=$($D version --format '{{.Server.Version}}')
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
# The multiplexed wire format offloadd chose (ODC3 with a runner that speaks it), from its log.
ODC=$(grep -o 'multiplexed (ODC[0-9]' "$DOCKER_CONFIG/offload/offloadd.log" 2>/dev/null | tail -1 |
  grep -o 'ODC[0-9]' || echo ODC2)
DIRTY=$(git -C "$ROOT" status --porcelain -- src cmd proto 2>/dev/null | wc -l)
jq -n \
  --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg commit "$COMMIT" --argjson dirty "$DIRTY" \
  --arg kernel "$(uname -r)" --arg cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" \
  --argjson cores "$(nproc)" --arg docker "$DOCKER_VERSION" --arg ssh "$(ssh -V 2>&1)" \
  --argjson stream_mib "$STREAM_MIB" \
  --slurpfile version "$R/api-version.json" --slurpfile ps "$R/api-ps.json" \
  --slurpfile run "$R/api-run.json" --slurpfile s1 "$R/stream-1.json" \
  --slurpfile s16 "$R/stream-16.json" --slurpfile rr "$R/rr.json" \
  --slurpfile connects "$R/connects.json" \
  --slurpfile idle "$R/footprint-idle.json" --slurpfile fs "$R/footprint-stream.json" \
  --slurpfile frr "$R/footprint-rr.json" \
  --slurpfile bsave "$( [ -f "$R/bulk-save.json" ] && echo "$R/bulk-save.json" || echo /dev/null)" \
  --slurpfile bload "$( [ -f "$R/bulk-load.json" ] && echo "$R/bulk-load.json" || echo /dev/null)" \
  --argjson bulk_mib "$BULK_MIB" \
  --slurpfile build "$( [ -f "$R/build.json" ] && echo "$R/build.json" || echo /dev/null)" \
  --argjson build_mib "$BUILD_CTX_MIB" \
  --slurpfile frun "$( [ -f "$R/far-run.json" ] && echo "$R/far-run.json" || echo /dev/null)" \
  --slurpfile flogs "$( [ -f "$R/far-logs.json" ] && echo "$R/far-logs.json" || echo /dev/null)" \
  --slurpfile fstream "$( [ -f "$R/far-stream.json" ] && echo "$R/far-stream.json" || echo /dev/null)" \
  --slurpfile ffp "$( [ -f "$R/footprint-far.json" ] && echo "$R/footprint-far.json" || echo /dev/null)" \
  --argjson far_delay "$FAR_DELAY_MS" --argjson far_mbit "$FAR_RATE_MBIT" \
  --argjson data_channel "$DATA_CHANNEL" --arg odc "$ODC" \
  '{machine: {date: $date, commit: $commit, uncommitted_product_files: $dirty, kernel: $kernel,
              cpu: $cpu, cores: $cores, docker: $docker, ssh: $ssh,
              forwarded_ports_over: (if $data_channel >= 2 then "the data channel (\($odc), multiplexed)"
                                    elif $data_channel == 1 then "the data channel (ODC1, a TLS connection each)"
                                    else "gRPC streams" end)},
    api_latency: {version: $version[0], ps: $ps[0], "run --rm img true": $run[0]},
    port_forward_throughput: {one_stream: $s1[0], sixteen_streams: $s16[0]},
    request_response: $rr[0],
    new_connections: $connects[0],
    footprint: {idle: $idle[0], during_throughput: $fs[0], during_request_response: $frr[0]},
    bulk: (if ($bsave | length) > 0 then {image_mib: $bulk_mib, save: $bsave[0], load: $bload[0]} else null end),
    build: (if ($build | length) > 0 then {context_mib: $build_mib} + $build[0] else null end),
    far_away: (if ($frun | length) > 0 then
      {delay_ms_each_way: $far_delay, rate_mbit: $far_mbit, link_mb_s: ($far_mbit / 8),
       "run --rm img true": $frun[0], "logs -f first byte": $flogs[0], one_stream: $fstream[0],
       footprint_during_stream: $ffp[0]} else null end)}' \
  >"$R/all.json"

"$ROOT/bench/report.sh" "$R/all.json" "$OUT"
cat "$R/all.json" >&2
say "done: $OUT"
