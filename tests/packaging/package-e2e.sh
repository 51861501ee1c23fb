#!/usr/bin/env bash
# The packages, end to end, on this machine (root): install both .debs, run the runner with the
# installed unit's own ExecStart line and environment file (CI has no systemd to start it), start
# a session through the installed plugin and offloadd, run a container, stop, and purge: nothing
# of the packages may be left.
#   tests/packaging/package-e2e.sh build/packages
set -euo pipefail
dir=$(cd "${1:?usage: package-e2e.sh DIR-WITH-DEBS}" && pwd)
docker=/usr/local/bin/docker
[ -x "$docker" ] || docker=$(command -v docker)
# Only the packaged programs: /usr/bin and the plugin from /usr/libexec.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
work=$(mktemp -d /tmp/offload-package-e2e.XXXXXX)
runner_pid=
cleanup() {
  set +e
  if [ -n "${DOCKER_CONFIG:-}" ] && [ -f "$DOCKER_CONFIG/offload/offloadd.pid" ]; then
    "$docker" offload stop --force >/dev/null 2>&1
    kill "$(cat "$DOCKER_CONFIG/offload/offloadd.pid")" 2>/dev/null
  fi
  if [ -n "$runner_pid" ] && kill -0 "$runner_pid" 2>/dev/null; then
    kill -TERM "$runner_pid"
    for _ in $(seq 1 600); do kill -0 "$runner_pid" 2>/dev/null || break; sleep 0.2; done
  fi
  DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq offload-runner docker-offload >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
step() { echo "--    $*"; }

step "install both packages"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$dir"/offload-runner_*_amd64.deb \
  "$dir"/docker-offload_*_amd64.deb >/dev/null
test "$(stat -c %a /etc/offload-runner/accounts)" = 600
test -x /usr/libexec/docker/cli-plugins/docker-offload

step "docker finds the packaged plugin for completion and its man pages are installed"
# An empty docker config: the plugin can only come from /usr/libexec/docker/cli-plugins.
verbs=$(DOCKER_CONFIG=$work/empty "$docker" __complete offload st 2>/dev/null | cut -f1 | tr '\n' ' ')
test "$verbs" = "start status stop :4 " || { echo "docker __complete offload st: $verbs"; exit 1; }
for page in man1/docker-offload.1.gz man8/offloadd.8.gz man8/offload-runner.8.gz; do
  test -s "/usr/share/man/$page"
done
test -f /usr/share/fish/vendor_conf.d/docker-offload.fish

step "run the runner as the unit does"
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "e2e:$token" >/etc/offload-runner/accounts
# The packaged flags stay (--live-restore); the test adds its own pool and ready file, and a
# fixed loopback port, so that the client finds the runner again after a restart.
grep -qx 'OFFLOAD_RUNNER_ARGS=--live-restore' /etc/offload-runner/runner.env
port=
for _ in $(seq 1 50); do
  candidate=$((20000 + RANDOM % 20000))
  ss -Hltn "sport = :$candidate" | grep -q . || { port=$candidate; break; }
done
test -n "$port"
sed -i "s|^OFFLOAD_RUNNER_LISTEN=.*|OFFLOAD_RUNNER_LISTEN=127.0.0.1:$port|; s|^OFFLOAD_RUNNER_ARGS=\(.*\)|OFFLOAD_RUNNER_ARGS=\"\1 --address-pool 10.236.0.0/24 --ready-file $work/ready.json\"|" \
  /etc/offload-runner/runner.env
unit=/usr/lib/systemd/system/offload-runner.service
exec_start=$(sed -n '/^ExecStart=/,/[^\\]$/p' "$unit" | sed 's/^ExecStart=//; s/\\$//' | tr '\n' ' ')
# What systemd does for the unit: its environment file, then its ExecStart.
start_runner() {
  rm -f "$work/ready.json"
  (
    set -a
    . /etc/offload-runner/runner.env
    set +a
    eval "exec $exec_start" >>"$work/runner.log" 2>&1
  ) &
  runner_pid=$!
  for _ in $(seq 1 300); do [ -s "$work/ready.json" ] && break; sleep 0.2; done
}
stop_runner() {
  kill -TERM "$runner_pid"
  for _ in $(seq 1 600); do kill -0 "$runner_pid" 2>/dev/null || break; sleep 0.2; done
  ! kill -0 "$runner_pid" 2>/dev/null
  wait "$runner_pid" || { echo "the runner exited with $?"; cat "$work/runner.log"; exit 1; }
  runner_pid=
}
start_runner
address=$(sed -n 's/.*"address":"\([^"]*\)".*/\1/p' "$work/ready.json")
fingerprint=$(sed -n 's/.*"fingerprint":"\([^"]*\)".*/\1/p' "$work/ready.json")
test -n "$address" || { cat "$work/runner.log"; exit 1; }

step "a session through the installed plugin and offloadd"
export DOCKER_CONFIG=$work/docker
mkdir -p "$DOCKER_CONFIG/offload" "$DOCKER_CONFIG/cli-plugins"
chmod 700 "$DOCKER_CONFIG/offload"
ln -s /usr/libexec/docker/cli-plugins/docker-offload "$DOCKER_CONFIG/cli-plugins/docker-offload"
echo '{}' >"$DOCKER_CONFIG/config.json"
echo "$token" >"$DOCKER_CONFIG/offload/e2e.token"
chmod 600 "$DOCKER_CONFIG/offload/e2e.token"
cat >"$DOCKER_CONFIG/offload/config.json" <<JSON
{"defaultAccount":"e2e","accounts":{"e2e":{"type":"remote","address":"$address","tokenFile":"e2e.token","fingerprint":"$fingerprint"}}}
JSON
"$docker" offload start >/dev/null
grep -q "^/usr/bin/offloadd" "/proc/$(cat "$DOCKER_CONFIG/offload/offloadd.pid")/cmdline"
root_dir=$("$docker" info --format '{{.DockerRootDir}}')
case "$root_dir" in /var/lib/offload-runner/sessions/*) ;; *) echo "not the packaged runner's engine: $root_dir"; exit 1;; esac

step "run a container"
rootfs=$work/rootfs
mkdir -p "$rootfs/bin"
cp /usr/bin/busybox "$rootfs/bin/busybox"
ln -s busybox "$rootfs/bin/sh"
ln -s busybox "$rootfs/bin/echo"
ln -s busybox "$rootfs/bin/sleep"
tar -C "$rootfs" -c . | "$docker" import - offload-package-e2e:1 >/dev/null
out=$("$docker" run --rm offload-package-e2e:1 echo hello from the packaged runner)
test "$out" = "hello from the packaged runner"

step "restart the runner (systemctl restart): the session and its container live on"
"$docker" run -d --name survivor offload-package-e2e:1 sh -c 'while :; do sleep 1; done' >/dev/null
session=$("$docker" offload status --format json | sed -n 's/.*"sessionId":"\([^"]*\)".*/\1/p')
test -n "$session"
stop_runner
ip netns list | grep -q "offload-$session"
start_runner
grep -q "session $session: running engine adopted" "$work/runner.log"
back=
for _ in $(seq 1 150); do
  if [ "$("$docker" ps --filter name=survivor --format '{{.State}}' 2>/dev/null)" = running ]; then
    back=1
    break
  fi
  sleep 0.2
done
test -n "$back" || { echo "the container is not back after the restart"; cat "$work/runner.log"; exit 1; }
"$docker" offload status --format json | grep -q "\"sessionId\":\"$session\""

step "stop the runner with the session running; removing the package destroys it"
kill "$(cat "$DOCKER_CONFIG/offload/offloadd.pid")" 2>/dev/null || true
stop_runner
ip netns list | grep -q "offload-$session"

step "purge leaves nothing"
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq offload-runner docker-offload >/dev/null
! ip netns list | grep -q "offload-$session" || { echo "the session's namespace survived removal"; exit 1; }
! pgrep -f "/run/offload-runner/" >/dev/null || { echo "session processes survived removal"; exit 1; }
for gone in /usr/bin/offload-runner /usr/bin/offloadd /usr/libexec/docker/cli-plugins/docker-offload \
  /etc/offload-runner /var/lib/offload-runner /usr/lib/systemd/system/offload-runner.service \
  /usr/share/man/man1/docker-offload.1.gz /usr/share/man/man8/offload-runner.8.gz \
  /usr/share/fish/vendor_conf.d/docker-offload.fish; do
  test ! -e "$gone" || { echo "left after purge: $gone"; exit 1; }
done
echo "ok    the packages install, serve a session and purge cleanly"
