#!/usr/bin/env bash
# `docker offload <TAB>` end to end: the real docker CLI 28 asks the plugin (`docker __complete
# offload ...`), and the shells' completion scripts turn that into candidates: docker's own bash
# and zsh completion (cobra's, from `docker completion bash|zsh`), Debian's docker.io bash
# completion, and fish with the file the docker-offload package installs. No engine or root
# needed.
#   tests/e2e/completion/completion-e2e.sh PLUGIN FISH-FILE
set -euo pipefail
plugin=$(realpath "${1:?usage: completion-e2e.sh PLUGIN FISH-FILE}")
fish_file=$(realpath "${2:?usage: completion-e2e.sh PLUGIN FISH-FILE}")
docker=/usr/local/bin/docker
[ -x "$docker" ] || docker=$(command -v docker)
work=$(mktemp -d /tmp/offload-completion.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail=0
expect() {  # expect NAME EXPECTED ACTUAL
  if [ "$2" == "$3" ]; then
    echo "ok    $1"
  else
    echo "FAIL  $1"
    diff <(printf '%s\n' "$2") <(printf '%s\n' "$3") | sed 's/^/      /'  || true
    fail=1
  fi
}

# The plugin where docker looks first, and a config with a remote account besides "local".
export DOCKER_CONFIG=$work/docker
mkdir -p "$DOCKER_CONFIG/cli-plugins" "$DOCKER_CONFIG/offload"
ln -s "$plugin" "$DOCKER_CONFIG/cli-plugins/docker-offload"
cat >"$DOCKER_CONFIG/offload/config.json" <<JSON
{"defaultAccount": "gpu",
 "accounts": {"gpu": {"type": "remote", "address": "gpu.example.com:7443", "tokenFile": "gpu.token",
                      "fingerprint": "sha256:$(printf 'a%.0s' $(seq 64))"}}}
JSON
# Completion must never reach an engine: a DOCKER_HOST that goes nowhere proves it.
export DOCKER_HOST=unix://$work/nowhere.sock
tab=$'\t'

# 1. The docker CLI delegates to the plugin and prints its answer as is.
expect "docker __complete offload st" \
  "start${tab}Start an offload session
status${tab}Show the offload session status
stop${tab}Stop the offload session and destroy its environment
:4" "$("$docker" __complete offload st 2>/dev/null)"
expect "docker __complete offload start --account ''" \
  "local${tab}Embedded runner on this machine
gpu${tab}Runner at gpu.example.com:7443 (default)
:4" "$("$docker" __complete offload start --account '' 2>/dev/null)"
expect "docker __complete offload status --format=j" \
  "json${tab}JSON output
:4" "$("$docker" __complete offload status --format=j 2>/dev/null)"
expect "docker __complete offload ps -" \
  "--all${tab}Show all containers (default shows just running)
-a${tab}Show all containers (default shows just running)
--format${tab}Format the output: pretty or json (default \"pretty\")
--help${tab}Print usage
-h${tab}Print usage
--quiet${tab}Only display container IDs
-q${tab}Only display container IDs
:4" "$("$docker" __complete offload ps - 2>/dev/null)"
expect "docker __complete off lists the plugin" \
  "offload${tab}Run containers and builds on an ephemeral remote engine" \
  "$("$docker" __complete off 2>/dev/null | grep '^offload')"
[ -d "$DOCKER_CONFIG/offload" ] && [ ! -e "$DOCKER_CONFIG/offload/offloadd.pid" ] &&
  echo "ok    completion started no offloadd" || { echo "FAIL  completion started offloadd"; fail=1; }

# 2. bash, with the script docker itself prints (cobra's bash completion V2).
bash_complete() {  # bash_complete SCRIPT WORDS...: the candidates bash would offer, one a line
  local script=$1
  shift
  bash -c '
    source /usr/share/bash-completion/bash_completion
    source "$0"
    COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 ))
    COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
    func=$(complete -p docker | sed -E "s/.* -F ([^ ]+) .*/\1/")
    $func docker "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
    printf "%s\n" "${COMPREPLY[@]}"' "$script" "$@" 2>/dev/null
}
"$docker" completion bash >"$work/docker-cobra.bash"
expect "bash (docker completion bash): docker offload st" \
  "start
status
stop" "$(bash_complete "$work/docker-cobra.bash" docker offload st)"
expect "bash (docker completion bash): docker offload start -a g" \
  "gpu" "$(bash_complete "$work/docker-cobra.bash" docker offload start -a g)"

# 3. bash, with Debian's docker.io completion (asks the plugin with __completeNoDesc directly).
debian=/usr/share/bash-completion/completions/docker
if [ -f "$debian" ] && grep -q __completeNoDesc "$debian"; then
  expect "bash (docker.io): docker offload st" \
    "start
status
stop" "$(bash_complete "$debian" docker offload st)"
  expect "bash (docker.io): docker offload status --format ''" \
    "pretty
json" "$(bash_complete "$debian" docker offload status --format '')"
else
  echo "FAIL  $debian (docker.io) is missing or does not complete plugins"
  fail=1
fi

# 3b. zsh, with the script docker itself prints (cobra's): its _docker runs for WORDS as zsh's
# completion system would call it; _describe, which would draw the menu, is replaced by a
# function that prints the "value:description" pairs it is given.
zsh_complete() {  # zsh_complete WORDS...
  zsh -f -c '
    compdef() { :; }
    compadd() { :; }
    _arguments() { print -r -- "_arguments $*"; }
    _describe() { print -rl -- "${completions[@]}"; }
    source "$0"
    words=("$@"); CURRENT=$#
    _docker' "$work/docker-cobra.zsh" "$@" 2>/dev/null
}
"$docker" completion zsh >"$work/docker-cobra.zsh"
expect "zsh (docker completion zsh): docker offload st" \
  "start:Start an offload session
status:Show the offload session status
stop:Stop the offload session and destroy its environment" \
  "$(zsh_complete docker offload st)"
expect "zsh (docker completion zsh): docker offload status --format ''" \
  "pretty:Human-readable output
json:JSON output" "$(zsh_complete docker offload status --format '')"

# 4. fish, with the package's vendor_conf.d file and whatever docker.fish fish finds.
fish_complete() { fish --no-config -c "source '$fish_file'; complete -C '$1'"; }
# Values only: where fish also loads docker.io's docker.fish, its "start" and "stop" (of a
# container) come with other descriptions.
expect "fish: docker offload st" \
  "start
status
stop" "$(fish_complete 'docker offload st' | cut -f1 | grep -xE 'start|status|stop' | sort -u || true)"
expect "fish: docker offload start --account " \
  "gpu${tab}Runner at gpu.example.com:7443 (default)
local${tab}Embedded runner on this machine" "$(fish_complete 'docker offload start --account ' | sort)"
expect "fish: docker offload status --format=" \
  "--format=json${tab}JSON output
--format=pretty${tab}Human-readable output" "$(fish_complete 'docker offload status --format=' | sort)"
expect "fish: docker -c ctx offload images -" \
  "--format${tab}Format the output: pretty or json (default \"pretty\")
--help${tab}Print usage
--quiet${tab}Only show image IDs
-h${tab}Print usage
-q${tab}Only show image IDs" "$(fish_complete 'docker -c ctx offload images -' | sort)"
expect "fish: docker off" \
  "offload${tab}Run containers and builds on an ephemeral remote engine" \
  "$(fish_complete 'docker off' | grep '^offload' || true)"
# With Debian's docker.io docker.fish also loaded (it lists docker's own commands wherever it
# sees none it knows): from the second <TAB> on, only the plugin's candidates after `offload`.
docker_fish=/usr/share/fish/vendor_completions.d/docker.fish
if [ -f "$docker_fish" ]; then
  expect "fish with docker.io's docker.fish: docker offload s" \
    "start${tab}Start an offload session
status${tab}Show the offload session status
stop${tab}Stop the offload session and destroy its environment" \
    "$(fish --no-config -c "set -a fish_complete_path $(dirname "$docker_fish"); source '$fish_file'
        complete -C 'docker offload s' >/dev/null; complete -C 'docker offload s'")"
  expect "fish with docker.io's docker.fish: docker ru (docker's own still there)" \
    "run" "$(fish --no-config -c "set -a fish_complete_path $(dirname "$docker_fish"); source '$fish_file'
        complete -C 'docker offload s' >/dev/null; complete -C 'docker ru'" | cut -f1)"
fi
exit $fail
