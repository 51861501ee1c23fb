#!/usr/bin/env bash
# docker offload's usage errors through the real docker CLI 28, compared with docker's own: the
# same wording (complaint, usage line, where help is) and the same exit codes (125 for a flag
# error, 1 for a stray argument or an unknown command). Parsing ends these runs, so no offloadd
# starts and no engine or root is needed.
#   tests/e2e/cli_conventions/cli-conventions-e2e.sh PLUGIN
set -euo pipefail
plugin=$(realpath "${1:?usage: cli-conventions-e2e.sh PLUGIN}")
docker=/usr/local/bin/docker
[ -x "$docker" ] || docker=$(command -v docker)
work=$(mktemp -d /tmp/offload-cli-conventions.XXXXXX)
trap 'rm -rf "$work"' EXIT
export DOCKER_CONFIG=$work/docker
mkdir -p "$DOCKER_CONFIG/cli-plugins"
ln -s "$plugin" "$DOCKER_CONFIG/cli-plugins/docker-offload"
# Nothing here may reach an engine: a DOCKER_HOST that goes nowhere.
export DOCKER_HOST=unix://$work/nowhere.sock
fail=0

check() {  # check NAME WANT-CODE WANT-STDERR ARGS...: docker ARGS exits WANT-CODE, says WANT-STDERR
  local name=$1 want_code=$2 want_err=$3 code=0
  shift 3
  "$docker" "$@" >"$work/out" 2>"$work/err" </dev/null || code=$?
  if [ "$code" == "$want_code" ] && [ "$(cat "$work/err")" == "$want_err" ] && [ ! -s "$work/out" ]; then
    echo "ok    $name"
  else
    echo "FAIL  $name: exit $code (want $want_code)"
    diff <(printf '%s\n' "$want_err") "$work/err" | sed 's/^/      /' || true
    sed 's/^/      stdout: /' "$work/out"
    fail=1
  fi
}
usage() {  # usage MESSAGE USAGE-LINE PATH: docker 28's usage error text
  printf '%s\n\nUsage:  %s\n\nRun '"'"'%s --help'"'"' for more information' "$1" "$2" "$3"
}

# Docker's own commands first: if these change (another docker CLI), the rest means nothing.
check "docker run --bogus (docker's own)" 125 \
  "$(usage "unknown flag: --bogus" "docker run [OPTIONS] IMAGE [COMMAND] [ARG...]" "docker run")" \
  run --bogus
check "docker ps xx (docker's own)" 1 \
  "$(usage "docker: 'docker ps' accepts no arguments" "docker ps [OPTIONS]" "docker ps")" ps xx
check "docker ps --format (docker's own)" 125 \
  "$(usage "flag needs an argument: --format" "docker ps [OPTIONS]" "docker ps")" ps --format

check "docker offload start --bogus" 125 \
  "$(usage "unknown flag: --bogus" "docker offload start [OPTIONS]" "docker offload start")" \
  offload start --bogus
check "docker offload status -x" 125 \
  "$(usage "unknown shorthand flag: 'x' in -x" "docker offload status [OPTIONS]" \
     "docker offload status")" offload status -x
check "docker offload status --format" 125 \
  "$(usage "flag needs an argument: --format" "docker offload status [OPTIONS]" \
     "docker offload status")" offload status --format
check "docker offload ps --format xml" 125 \
  "$(usage 'invalid argument "xml" for "--format" flag: must be "pretty" or "json"' \
     "docker offload ps [OPTIONS]" "docker offload ps")" offload ps --format xml
check "docker offload start --timeout ten" 125 \
  "$(usage 'invalid argument "ten" for "--timeout" flag: not a duration (use e.g. 90s, 5m or 1h30m)' \
     "docker offload start [OPTIONS]" "docker offload start")" offload start --timeout ten
check "docker offload --bogus" 125 \
  "$(usage "unknown flag: --bogus" "docker offload COMMAND" "docker offload")" offload --bogus
check "docker offload status now" 1 \
  "$(usage "docker: 'docker offload status' accepts no arguments" \
     "docker offload status [OPTIONS]" "docker offload status")" offload status now
check "docker offload accounts remove" 1 \
  "$(usage "docker: 'docker offload accounts remove' requires 1 argument" \
     "docker offload accounts remove NAME" "docker offload accounts remove")" \
  offload accounts remove
check "docker offload bogus" 1 \
  "$(usage "docker: unknown command: docker offload bogus" "docker offload COMMAND" \
     "docker offload")" offload bogus
[ ! -e "$DOCKER_CONFIG/offload/offloadd.pid" ] && echo "ok    usage errors started no offloadd" ||
  { echo "FAIL  a usage error started offloadd"; fail=1; }
exit $fail
