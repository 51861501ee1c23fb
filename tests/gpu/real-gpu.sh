#!/usr/bin/env bash
# GPU sessions on a real NVIDIA machine: the proof that CI cannot give (it has no GPU). Run it
# by hand, as root, on a machine with an NVIDIA GPU, its driver (nvidia-smi works), the NVIDIA
# Container Toolkit (nvidia-container-runtime-hook on PATH), docker.io and the docker CLI:
#
#   tests/gpu/real-gpu.sh BUILD/bin [IMAGE]
#
# IMAGE must have a C library for the nvidia-smi that the toolkit mounts into the container
# (default ubuntu:22.04, pulled by the session engine; set it to an image you have if the
# machine is offline). It checks, through the real docker CLI and the embedded local runner:
#   1. `docker offload start --gpu` starts a session, and status says "GPU: Yes (<model>)";
#   2. `docker run --gpus all IMAGE nvidia-smi` in the session lists the host's GPUs, and
#      `--gpus 1` one of them;
#   3. a session started without --gpu refuses `docker run --gpus all`.
# Everything it made is removed at the end (the sessions are stopped).
set -euo pipefail
bin=$(realpath "${1:?usage: real-gpu.sh BUILD/bin [IMAGE]}")
image=${2:-ubuntu:22.04}
[ "$(id -u)" == 0 ] || { echo "needs root (the local runner starts engines)"; exit 2; }
host_gpus=$(nvidia-smi --query-gpu=name --format=csv,noheader) ||
  { echo "nvidia-smi does not work here: no GPU or no driver"; exit 2; }
command -v nvidia-container-runtime-hook >/dev/null ||
  { echo "no nvidia-container-runtime-hook: install nvidia-container-toolkit"; exit 2; }

work=$(mktemp -d /tmp/offload-gpu.XXXXXX)
export DOCKER_CONFIG=$work/docker
unset DOCKER_HOST DOCKER_CONTEXT
mkdir -p "$DOCKER_CONFIG/cli-plugins" "$DOCKER_CONFIG/offload"
chmod 700 "$DOCKER_CONFIG/offload"
ln -s "$bin/docker-offload" "$DOCKER_CONFIG/cli-plugins/docker-offload"
echo '{"auths": {}}' >"$DOCKER_CONFIG/config.json"
echo '{"local": {"addressPool": "10.239.0.0/24"}}' >"$DOCKER_CONFIG/offload/config.json"
cleanup() {
  docker offload stop --force >/dev/null 2>&1 || true
  [ -f "$DOCKER_CONFIG/offload/offloadd.pid" ] && kill "$(cat "$DOCKER_CONFIG/offload/offloadd.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail=0
ok() { echo "ok    $1"; }
bad() { echo "FAIL  $1"; fail=1; }

docker offload start --gpu
status=$(docker offload status)
first_model=$(head -n1 <<<"$host_gpus")
grep -q "^GPU: *Yes (.*$first_model" <<<"$status" && ok "status: GPU: Yes ($first_model)" ||
  bad "status does not name the GPU: $status"

in_session=$(docker run --rm --gpus all "$image" nvidia-smi --query-gpu=name --format=csv,noheader)
[ "$in_session" == "$host_gpus" ] && ok "docker run --gpus all $image nvidia-smi lists the host's GPUs" ||
  bad "docker run --gpus all: got '$in_session', want '$host_gpus'"
one=$(docker run --rm --gpus 1 "$image" nvidia-smi --query-gpu=name --format=csv,noheader | wc -l)
[ "$one" == 1 ] && ok "docker run --gpus 1 sees one GPU" || bad "docker run --gpus 1 sees $one"

docker offload stop --force
docker offload start
if refused=$(docker run --rm --gpus all "$image" true 2>&1); then
  bad "a session without --gpu ran --gpus all"
else
  grep -q "this session has no GPU" <<<"$refused" && ok "a session without --gpu refuses --gpus" ||
    bad "unexpected refusal: $refused"
fi
exit $fail
