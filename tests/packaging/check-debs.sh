#!/usr/bin/env bash
# Checks the two .deb files scripts/package.sh made: names, metadata, every file where it must
# be, the maintainer scripts, and that the programs unpacked into an empty directory run.
#   tests/packaging/check-debs.sh build/packages
set -euo pipefail
dir=${1:?usage: check-debs.sh DIR-WITH-DEBS}
fail=0
check() {  # check DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@" >/dev/null 2>&1; then
    echo "ok    $what"
  else
    echo "FAIL  $what"
    fail=1
  fi
}
client=$(ls "$dir"/docker-offload_*_amd64.deb 2>/dev/null | head -1)
runner=$(ls "$dir"/offload-runner_*_amd64.deb 2>/dev/null | head -1)
check "docker-offload .deb built" test -n "$client"
check "offload-runner .deb built" test -n "$runner"
[ -n "$client" ] && [ -n "$runner" ] || exit 1

field() { dpkg-deb -f "$1" "$2"; }
has() { dpkg-deb -c "$1" | awk '{print $1, $6}' | grep -qx -- "$2"; }
check "client package name" test "$(field "$client" Package)" = docker-offload
check "runner package name" test "$(field "$runner" Package)" = offload-runner
check "one version for both" test "$(field "$client" Version)" = "$(field "$runner" Version)"
check "version is stamped from git" sh -c "dpkg --compare-versions '$(field "$client" Version)' ge 0.1.0~"
check "client depends on gRPC (shlibdeps)" sh -c "dpkg-deb -f '$client' Depends | grep -q libgrpc++"
for dep in docker.io iproute2 iptables uidmap e2fsprogs passwd util-linux libsystemd0; do
  check "runner depends on $dep" sh -c "dpkg-deb -f '$runner' Depends | grep -Eq '(^|, )$dep( |,|\$)'"
done
check "plugin in /usr/libexec/docker/cli-plugins" has "$client" "-rwxr-xr-x ./usr/libexec/docker/cli-plugins/docker-offload"
check "offloadd in /usr/bin" has "$client" "-rwxr-xr-x ./usr/bin/offloadd"
check "runner in /usr/bin" has "$runner" "-rwxr-xr-x ./usr/bin/offload-runner"
check "systemd unit" has "$runner" "-rw-r--r-- ./usr/lib/systemd/system/offload-runner.service"
check "config file" has "$runner" "-rw-r--r-- ./etc/offload-runner/runner.env"
check "no accounts file shipped (secrets)" sh -c "! dpkg-deb -c '$runner' | grep -q 'etc/offload-runner/accounts'"
check "client package holds no runner" sh -c "! dpkg-deb -c '$client' | grep -q offload-runner"
check "man page docker-offload(1)" has "$client" "-rw-r--r-- ./usr/share/man/man1/docker-offload.1.gz"
check "man page offloadd(8)" has "$client" "-rw-r--r-- ./usr/share/man/man8/offloadd.8.gz"
check "man page offload-runner(8)" has "$runner" "-rw-r--r-- ./usr/share/man/man8/offload-runner.8.gz"
check "fish completion of docker offload" has "$client" "-rw-r--r-- ./usr/share/fish/vendor_conf.d/docker-offload.fish"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb -e "$runner" "$work/control"
check "runner.env is a conffile" grep -qx /etc/offload-runner/runner.env "$work/control/conffiles"
for script in postinst prerm postrm; do
  check "$script is executable" test -x "$work/control/$script"
  check "$script passes sh -n" sh -n "$work/control/$script"
done
check "postinst makes the accounts file 0600" grep -q "chmod 0600 /etc/offload-runner/accounts" "$work/control/postinst"
unit="$work/unit"
dpkg-deb --fsys-tarfile "$runner" | tar -xO ./usr/lib/systemd/system/offload-runner.service >"$unit"
check "unit is Type=notify" grep -qx "Type=notify" "$unit"
check "unit runs /usr/bin/offload-runner serve" grep -q "^ExecStart=/usr/bin/offload-runner serve" "$unit"
# Engines outlive a restart: systemd must not kill the unit's other processes on stop.
check "unit kills only the runner on stop" grep -qx "KillMode=process" "$unit"
env_file="$work/runner.env"
dpkg-deb --fsys-tarfile "$runner" | tar -xO ./etc/offload-runner/runner.env >"$env_file"
check "runner.env turns on --live-restore" grep -qx "OFFLOAD_RUNNER_ARGS=--live-restore" "$env_file"
check "prerm destroys leftover engines on removal" grep -q "offload-runner cleanup" "$work/control/prerm"
# Unpacked into an empty directory, the programs run (their libraries are the declared ones).
dpkg -x "$client" "$work/client"
dpkg -x "$runner" "$work/runner"
check "offload-runner --help runs" "$work/runner/usr/bin/offload-runner" --help
check "offloadd --help runs" "$work/client/usr/bin/offloadd" --help
check "the plugin answers docker's metadata call" sh -c "'$work/client/usr/libexec/docker/cli-plugins/docker-offload' docker-cli-plugin-metadata | grep -q '\"SchemaVersion\"'"
for page in usr/share/man/man1/docker-offload.1.gz usr/share/man/man8/offloadd.8.gz; do
  check "$page is a man page (.TH)" sh -c "gzip -dc '$work/client/$page' | grep -q '^\.TH '"
done
check "offload-runner.8.gz is a man page (.TH)" sh -c "gzip -dc '$work/runner/usr/share/man/man8/offload-runner.8.gz' | grep -q '^\.TH '"
check "the fish completion parses" sh -c "! command -v fish || fish --no-execute '$work/client/usr/share/fish/vendor_conf.d/docker-offload.fish'"
check "the binaries carry no debug info" sh -c "! readelf -S '$work/runner/usr/bin/offload-runner' | grep -q debug_info"
exit $fail
