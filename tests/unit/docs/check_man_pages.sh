#!/usr/bin/env bash
# Keeps the man pages honest: every command, subcommand and flag the programs' own --help lists
# must appear in its man page source (docs/man/*.md), so a new flag cannot ship undocumented.
#   check_man_pages.sh PLUGIN OFFLOADD RUNNER MAN-DIR
#   check_man_pages.sh --self-test PLUGIN OFFLOADD RUNNER MAN-DIR   # the check catches an omission
set -euo pipefail
if [ "${1:-}" = --self-test ]; then
  shift
  copy=$(mktemp -d)
  trap 'rm -rf "$copy"' EXIT
  cp "$4"/*.md "$copy"/
  # Remove every mention of one runner flag and one plugin verb: both must be reported.
  sed -i 's/--client-ttl/--client-ttx/g' "$copy/offload-runner.8.md"
  sed -i 's/^## diagnose$/## diagnoze/' "$copy/docker-offload.1.md"
  if out=$("$0" "$1" "$2" "$3" "$copy" 2>&1); then
    echo "the check passed man pages that lack --client-ttl and the diagnose verb"
    exit 1
  fi
  echo "$out"
  grep -q "offload-runner.8.md: no flag --client-ttl of 'offload-runner serve'" <<<"$out" &&
    grep -q "docker-offload.1.md: no section '## diagnose'" <<<"$out"
  exit
fi
plugin=${1:?usage: check_man_pages.sh PLUGIN OFFLOADD RUNNER MAN-DIR}
offloadd=${2:?} runner=${3:?} man=${4:?}
missing=0
need() {  # need PAGE TEXT WHAT
  if ! grep -qF -- "$2" "$man/$1"; then
    echo "$1: no $3"
    missing=$((missing + 1))
  fi
}
flags_in() { grep -oE -- '(^|[ ,])--[a-z][a-z0-9-]*' | sed 's/^[ ,]//' | sort -u; }
# Subcommands from a help text: docker's "Commands:" and CLI11's "Subcommands:" sections.
subcommands_in() {
  # CLI11 lists aliases after the name ("remove, rm"): the name alone.
  awk '/^(Commands|Subcommands):/ {on = 1; next} on && /^  [a-z]/ {sub(/,$/, "", $1); print $1; next} on {on = 0}'
}

# docker-offload: a "## VERB" section per verb holding each of its flags; "VERB SUB" for a
# verb's own subcommands.
verbs=$("$plugin" --help | subcommands_in)
[ -n "$verbs" ] || { echo "no commands in '$plugin --help'"; exit 1; }
need docker-offload.1.md "**--help**" "flag --help"
for verb in $verbs; do
  need docker-offload.1.md "## $verb" "section '## $verb'"
  section=$(awk -v h="## $verb" '$0 == h {on = 1; next} on && /^##? / {on = 0} on' \
              "$man/docker-offload.1.md")
  help=$("$plugin" "$verb" --help)
  for flag in $(flags_in <<<"$help"); do
    [ "$flag" = --help ] && continue
    grep -qF -- "**$flag**" <<<"$section" || {
      echo "docker-offload.1.md: no flag $flag in the section of '$verb'"
      missing=$((missing + 1))
    }
  done
  for sub in $(subcommands_in <<<"$help"); do
    need docker-offload.1.md "$verb $sub" "subcommand '$verb $sub'"
  done
done

# offloadd: every flag.
for flag in $("$offloadd" --help | flags_in); do
  need offloadd.8.md "**$flag**" "flag $flag of offloadd"
done

# offload-runner: every subcommand, every flag of each, and their own subcommands.
check_runner() {  # check_runner WORDS...: the command `offload-runner WORDS...`
  local help sub flag
  # A word CLI11 does not know shows the parent's help again: never recurse without end.
  [ $# -le 3 ] || { echo "offload-runner $*: nested too deep; is a subcommand name misread?"; exit 1; }
  help=$("$runner" "$@" --help)
  for flag in $(flags_in <<<"$help"); do
    need offload-runner.8.md "**$flag**" "flag $flag of 'offload-runner${*:+ $*}'"
  done
  for sub in $(subcommands_in <<<"$help"); do
    need offload-runner.8.md "**$sub**" "subcommand '$*${*:+ }$sub' of offload-runner"
    check_runner "$@" "$sub"
  done
}
check_runner

if [ "$missing" -gt 0 ]; then
  echo "$missing command(s) or flag(s) missing from the man pages in $man"
  exit 1
fi
echo "the man pages in $man name every command and flag"
