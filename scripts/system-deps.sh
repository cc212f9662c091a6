#!/usr/bin/env bash
# Installs the Debian packages the build, the tests and the demo need, when they are missing.
# Usage: scripts/system-deps.sh [base|model]   (model adds what the training venv needs)
set -euo pipefail

# libclang-dev: nokhwa's V4L2 bindings (bindgen); libaravis-dev, libusb-1.0-0-dev: the aravis
# crate (GigE Vision); aravis-tools: arv-fake-gv-camera-0.8, the simulator the tests stream from.
# systemd: systemd-socket-activate (the service tests), systemd-analyze, -sysusers, -tmpfiles
# (scripts/check-units.sh; systemd need not be PID 1); procps: /bin/kill, the unit's ExecReload=;
# dpkg-dev: dpkg-shlibdeps for the package's dependencies (scripts/package.sh, cargo-deb);
# make: scripts/package.sh checks `make install`; g++: libFuzzer (scripts/fuzz.sh, cargo-fuzz).
# mbpoll (libmodbus) and python3-venv (the venv with pymodbus that tests/bridge_modbus.rs creates
# in target/plc-venv): the two real Modbus clients the bridge's tests drive it with.
# mosquitto, mosquitto-clients (mosquitto_sub, mosquitto_pub): the real MQTT broker and subscriber
# the gateway's tests publish through (tests/gateway_mqtt.rs); prometheus: the real server that
# scrapes the gateway and promtool, which checks its /metrics (tests/gateway_metrics.rs); chromium,
# chromium-driver: the headless browser, driven over WebDriver, that loads the gateway's page
# (tests/gateway_page.rs).
want=(ca-certificates python3 python3-pip python3-venv pkg-config gcc libc6-dev
      libclang-dev libaravis-dev libusb-1.0-0-dev aravis-tools
      systemd procps dpkg-dev make g++ mbpoll
      mosquitto mosquitto-clients prometheus chromium chromium-driver)

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if ! command -v apt-get >/dev/null; then
  echo "system-deps: missing ${missing[*]} and no apt-get here; install them with your package manager" >&2
  exit 1
fi
sudo=()
[[ $(id -u) -ne 0 ]] && sudo=(sudo)
echo "system-deps: installing ${missing[*]}"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
