#!/usr/bin/env bash
# Checks the systemd files under systemd/ (test.sh runs this; so can you after editing them):
#   - `systemd-analyze verify` of inspectord.service + inspectord.socket, and of the service with
#     the GenICam drop-in genicam.conf; any warning about them fails the check;
#   - `systemd-analyze security --offline=true`: the service's overall exposure must be
#     <= MAX_EXPOSURE (1.0), with the GenICam drop-in <= MAX_EXPOSURE_GENICAM (1.5); the Modbus
#     bridge's and the gateway's <= 1.0;
#   - the sysusers.d and tmpfiles.d files, applied to an empty root;
#   - inspectord.socket's ListenStream= equals output.socket of the installed config.
# Needs the systemd package (systemd-analyze, systemd-sysusers, systemd-tmpfiles), not systemd as
# PID 1: it runs the same in a container or a fresh chroot.
#
# `verify` refuses a unit whose Exec*= binary does not exist, and /usr/bin/inspectord exists
# only once the package is installed. So the units are verified from a temporary copy in which
# /usr/bin/inspectord is the binary built from this tree (target/release/inspectord, built here
# if missing); nothing else in the copy changes, so everything else is verified as shipped
# (/bin/kill of ExecReload= included: Debian's procps). The unknown user `inspectord` is no
# problem for verify; the sysusers file is checked separately.
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_EXPOSURE=${MAX_EXPOSURE:-1.0}
MAX_EXPOSURE_GENICAM=${MAX_EXPOSURE_GENICAM:-1.5}
# The Modbus bridge faces the PLC network (AF_INET, no PrivateNetwork=): 1.0 is what is left.
MAX_EXPOSURE_MODBUS=${MAX_EXPOSURE_MODBUS:-1.0}
# The gateway likewise (HTTP and MQTT over AF_INET).
MAX_EXPOSURE_GATEWAY=${MAX_EXPOSURE_GATEWAY:-1.0}

bash scripts/system-deps.sh

target_dir=${CARGO_TARGET_DIR:-target}
bin=$(realpath -m "$target_dir/release/inspectord")
if [[ ! -x $bin ]]; then
  echo "check-units: building $bin" >&2
  cargo build --release --locked
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

# The units as shipped, with the built binary in place of /usr/bin/inspectord. Two directories:
# `verify` and `security` also read drop-ins from <dir>/inspectord.service.d/.
mkdir -p "$tmp/default" "$tmp/genicam/inspectord.service.d"
for d in default genicam; do
  for unit in inspectord.service inspectord.socket inspectord-modbus.service inspectord-modbus.socket \
              inspectord-gateway.service; do
    sed "s|/usr/bin/inspectord|$bin|g" "systemd/$unit" > "$tmp/$d/$unit"
  done
done
cp systemd/genicam.conf "$tmp/genicam/inspectord.service.d/genicam.conf"

verify() { # verify LABEL UNIT-FILE...
  local label=$1 out rc=0
  shift
  out=$(systemd-analyze verify --man=no --recursive-errors=no "$@" 2>&1) || rc=$?
  if [[ $rc -ne 0 ]] || grep -q -e inspectord -e genicam <<<"$out"; then
    echo "check-units: FAIL: systemd-analyze verify ($label), exit $rc:" >&2
    echo "$out" >&2
    fail=1
  else
    [[ -n $out ]] && echo "$out"    # about other units (this host's), not ours
    echo "check-units: verify ($label): ok"
  fi
}
verify "inspectord.service, inspectord.socket" "$tmp/default/inspectord.service" "$tmp/default/inspectord.socket"
verify "inspectord.service + genicam.conf" "$tmp/genicam/inspectord.service" "$tmp/genicam/inspectord.socket"
verify "inspectord-modbus.service, inspectord-modbus.socket" "$tmp/default/inspectord-modbus.service" "$tmp/default/inspectord-modbus.socket"
verify "inspectord-gateway.service" "$tmp/default/inspectord-gateway.service"

exposure() { # exposure LABEL UNIT-FILE MAX
  local label=$1 unit=$2 max=$3 out level
  out=$(systemd-analyze security --offline=true --no-pager "$unit" 2>&1) || true
  level=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' <<<"$out")
  if [[ -z $level ]]; then
    echo "check-units: FAIL: no exposure level from systemd-analyze security ($label):" >&2
    echo "$out" >&2
    fail=1
    return
  fi
  # The settings that still count, for the log.
  grep '^✗' <<<"$out" | sed 's/^/  /' || true
  if awk -v l="$level" -v m="$max" 'BEGIN { exit !(l > m) }'; then
    echo "check-units: FAIL: exposure ($label) $level > $max" >&2
    fail=1
  else
    echo "check-units: exposure ($label): $level (<= $max)"
  fi
}
exposure "inspectord.service" "$tmp/default/inspectord.service" "$MAX_EXPOSURE"
exposure "inspectord.service + genicam.conf" "$tmp/genicam/inspectord.service" "$MAX_EXPOSURE_GENICAM"
exposure "inspectord-modbus.service" "$tmp/default/inspectord-modbus.service" "$MAX_EXPOSURE_MODBUS"
exposure "inspectord-gateway.service" "$tmp/default/inspectord-gateway.service" "$MAX_EXPOSURE_GATEWAY"

# sysusers.d and tmpfiles.d, applied to an empty root: the user, its groups, the state directory.
root=$tmp/root
mkdir -p "$root/etc"
if out=$(systemd-sysusers --root="$root" "$PWD/systemd/inspectord.sysusers" 2>&1) &&
   grep -q '^inspectord:' "$root/etc/passwd" &&
   grep -q '^video:.*inspectord' "$root/etc/group" &&
   out+=$(systemd-tmpfiles --root="$root" --create "$PWD/systemd/inspectord.tmpfile" 2>&1) &&
   [[ $(stat -c %a "$root/var/lib/inspectord") == 750 ]]; then
  echo "check-units: sysusers.d, tmpfiles.d: ok"
else
  echo "check-units: FAIL: sysusers.d/tmpfiles.d:" >&2
  echo "$out" >&2
  fail=1
fi

# The socket unit and the installed config must name the same socket.
listen=$(sed -n 's/^ListenStream=//p' systemd/inspectord.socket)
configured=$(sed -n 's/^socket = "\(.*\)"/\1/p' config/inspectord.production.toml)
if [[ $listen != "$configured" ]]; then
  echo "check-units: FAIL: inspectord.socket ListenStream=$listen but config/inspectord.production.toml output.socket = $configured" >&2
  fail=1
fi

# The bridge's unit joins the daemon's group (socket access and permission to command), takes its
# port from its socket unit (502: no capability), and runs the installed bridge config.
grep -qx 'SupplementaryGroups=inspectord' systemd/inspectord-modbus.service ||
  { echo "check-units: FAIL: inspectord-modbus.service does not join group inspectord" >&2; fail=1; }
grep -qx 'ListenStream=502' systemd/inspectord-modbus.socket ||
  { echo "check-units: FAIL: inspectord-modbus.socket does not listen on 502" >&2; fail=1; }
grep -qx 'CapabilityBoundingSet=' systemd/inspectord-modbus.service ||
  { echo "check-units: FAIL: inspectord-modbus.service keeps capabilities" >&2; fail=1; }
grep -q -- '--config /etc/inspectord/modbus.toml' systemd/inspectord-modbus.service ||
  { echo "check-units: FAIL: inspectord-modbus.service does not run /etc/inspectord/modbus.toml" >&2; fail=1; }
# The example bridge config names the daemon's socket.
bridge_socket=$(sed -n 's/^socket = "\(.*\)"/\1/p' config/modbus.toml)
if [[ $bridge_socket != "$listen" ]]; then
  echo "check-units: FAIL: config/modbus.toml daemon.socket = $bridge_socket but inspectord.socket ListenStream=$listen" >&2
  fail=1
fi

# The gateway joins the daemon's group (socket and failure images), keeps no capability, runs
# the installed gateway config, sees the failure images read-only and nothing else of the
# daemon's state, and names the daemon's socket in its example config.
grep -qx 'SupplementaryGroups=inspectord' systemd/inspectord-gateway.service ||
  { echo "check-units: FAIL: inspectord-gateway.service does not join group inspectord" >&2; fail=1; }
grep -qx 'CapabilityBoundingSet=' systemd/inspectord-gateway.service ||
  { echo "check-units: FAIL: inspectord-gateway.service keeps capabilities" >&2; fail=1; }
grep -q -- '--config /etc/inspectord/gateway.toml' systemd/inspectord-gateway.service ||
  { echo "check-units: FAIL: inspectord-gateway.service does not run /etc/inspectord/gateway.toml" >&2; fail=1; }
grep -qx 'TemporaryFileSystem=/var/lib/inspectord:ro' systemd/inspectord-gateway.service &&
  grep -qx 'BindReadOnlyPaths=-/var/lib/inspectord/failures' systemd/inspectord-gateway.service ||
  { echo "check-units: FAIL: inspectord-gateway.service does not see only the failure images, read-only" >&2; fail=1; }
gateway_socket=$(sed -n '/^\[daemon\]/,/^\[/s/^socket = "\(.*\)"/\1/p' config/gateway.toml)
if [[ $gateway_socket != "$listen" ]]; then
  echo "check-units: FAIL: config/gateway.toml daemon.socket = $gateway_socket but inspectord.socket ListenStream=$listen" >&2
  fail=1
fi
gateway_failures=$(sed -n 's/^failures_dir = "\(.*\)".*/\1/p' config/gateway.toml)
if [[ $gateway_failures != /var/lib/inspectord/failures ]]; then
  echo "check-units: FAIL: config/gateway.toml http.failures_dir = $gateway_failures, not the unit's /var/lib/inspectord/failures" >&2
  fail=1
fi

exit $fail
