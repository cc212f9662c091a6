#!/usr/bin/env bash
# `make deb`: builds the Debian package target/debian/inspectord_<version>-1_<arch>.deb with
# cargo-deb (release build; metadata in Cargo.toml [package.metadata.deb]) and checks it:
# prints `dpkg-deb --info` and `--contents`, fails unless every file the service needs is in it,
# the maintainer scripts create the user, and the packaged binary, library, model, references and
# config load together (`inspectord check` on the unpacked tree). Then checks `make install`
# into a temporary DESTDIR (PREFIX=/usr and /usr/local, and that an edited config is kept).
# test.sh (CI) runs it. Set-up on a fresh Debian machine: system packages, ONNX Runtime, and
# cargo-deb itself (pinned; `cargo install` into ~/.cargo/bin, a few minutes the first time).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0

bash scripts/system-deps.sh
bash scripts/fetch-onnxruntime.sh

if [[ $(cargo deb --version 2>/dev/null) != "cargo-deb $CARGO_DEB_VERSION" ]]; then
  echo "package: installing cargo-deb $CARGO_DEB_VERSION" >&2
  cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
fi

# cargo deb runs `cargo build --release --locked` (a no-op when the release build is current)
# and prints the path of the .deb last.
deb=$(cargo deb --locked | tail -n 1)
[[ -f $deb ]] || { echo "package: cargo deb did not report a .deb (got '$deb')" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
problem() { echo "package: FAIL: $*" >&2; fail=1; }

echo "== dpkg-deb --info $deb"
dpkg-deb --info "$deb"
echo "== dpkg-deb --contents $deb"
dpkg-deb --contents "$deb" | tee "$tmp/contents"

# Every file the service needs (paths as dpkg-deb lists them).
deb_files=(
  ./usr/bin/inspectord
  ./etc/inspectord/inspectord.toml
  ./usr/lib/inspectord/libonnxruntime.so
  ./usr/share/inspectord/models/elpv-siamese.onnx
  ./usr/share/inspectord/models/elpv-references.safetensors
  ./usr/share/inspectord/models/elpv-lite0.onnx
  ./usr/share/inspectord/models/elpv-lite0-references.safetensors
  ./usr/lib/systemd/system/inspectord.service
  ./usr/lib/systemd/system/inspectord.socket
  ./usr/lib/systemd/system/inspectord-modbus.service
  ./usr/lib/systemd/system/inspectord-modbus.socket
  ./etc/inspectord/modbus.toml
  ./usr/share/doc/inspectord/PLC.md
  ./usr/lib/systemd/system/inspectord-gateway.service
  ./etc/inspectord/gateway.toml
  ./usr/share/doc/inspectord/GATEWAY.md
  ./usr/share/doc/inspectord/FLEET.md
  ./usr/lib/sysusers.d/inspectord.conf
  ./usr/lib/tmpfiles.d/inspectord.conf
  ./usr/share/doc/inspectord/copyright
  ./usr/share/doc/inspectord/README.md
  ./usr/share/doc/inspectord/PROTOCOL.md
  ./usr/share/doc/inspectord/onnxruntime/LICENSE
  ./usr/share/doc/inspectord/examples/genicam.conf
)
awk '{ print $NF }' "$tmp/contents" > "$tmp/paths"
for f in "${deb_files[@]}"; do
  grep -qxF -- "$f" "$tmp/paths" || problem "$f is not in the package"
done

# Control data: the config is a conffile, the postinst creates the user (before anything can
# start the units), the binary's libraries are dependencies.
dpkg-deb --control "$deb" "$tmp/control"
grep -qx /etc/inspectord/inspectord.toml "$tmp/control/conffiles" 2>/dev/null ||
  problem "/etc/inspectord/inspectord.toml is not a conffile"
grep -q 'systemd-sysusers.*inspectord.conf' "$tmp/control/postinst" 2>/dev/null ||
  problem "postinst does not run systemd-sysusers inspectord.conf"
grep -q 'systemd-tmpfiles --create.*inspectord.conf' "$tmp/control/postinst" 2>/dev/null ||
  problem "postinst does not run systemd-tmpfiles --create inspectord.conf"
depends=$(dpkg-deb --field "$deb" Depends)
for dep in libaravis libc6 libstdc++6 procps systemd; do
  grep -q "$dep" <<<"$depends" || problem "Depends lacks $dep: $depends"
done

# The units are packaged as they are in systemd/.
x=$tmp/x
dpkg-deb --extract "$deb" "$x"
for unit in inspectord.service inspectord.socket inspectord-modbus.service inspectord-modbus.socket \
            inspectord-gateway.service; do
  cmp -s "systemd/$unit" "$x/usr/lib/systemd/system/$unit" || problem "packaged $unit differs from systemd/$unit"
done
grep -qx /etc/inspectord/modbus.toml "$tmp/control/conffiles" 2>/dev/null ||
  problem "/etc/inspectord/modbus.toml is not a conffile"
grep -qx /etc/inspectord/gateway.toml "$tmp/control/conffiles" 2>/dev/null ||
  problem "/etc/inspectord/gateway.toml is not a conffile"

# The packaged binary, library, model, references and config work together: `inspectord check`
# on the unpacked tree, with /usr, /run and /var/lib paths moved into it (the camera is absent
# here: a warning, not an error).
sed -e "s|/usr/share/inspectord/|$x/usr/share/inspectord/|" -e "s|/run/inspectord/|$x/run/|" \
    -e "s|/var/lib/inspectord/|$x/var/lib/inspectord/|" \
    "$x/etc/inspectord/inspectord.toml" > "$tmp/check.toml"
if ORT_DYLIB_PATH=$x/usr/lib/inspectord/libonnxruntime.so INSPECTORD_LOG=warn \
     "$x/usr/bin/inspectord" check --config "$tmp/check.toml" > "$tmp/check.out" 2>&1; then
  echo "package: inspectord check on the unpacked package: ok"
else
  cat "$tmp/check.out" >&2
  problem "inspectord check on the unpacked package failed"
fi

# make install: the same files under DESTDIR, paths rewritten for another PREFIX, config kept.
install_files=(
  bin/inspectord
  lib/inspectord/libonnxruntime.so
  share/inspectord/models/elpv-siamese.onnx
  share/inspectord/models/elpv-references.safetensors
  share/inspectord/models/elpv-lite0.onnx
  share/inspectord/models/elpv-lite0-references.safetensors
  lib/systemd/system/inspectord.service
  lib/systemd/system/inspectord.socket
  lib/systemd/system/inspectord-modbus.service
  lib/systemd/system/inspectord-modbus.socket
  share/doc/inspectord/PLC.md
  lib/systemd/system/inspectord-gateway.service
  share/doc/inspectord/GATEWAY.md
  share/doc/inspectord/FLEET.md
  share/doc/inspectord/examples/gateway.toml
  lib/sysusers.d/inspectord.conf
  lib/tmpfiles.d/inspectord.conf
  share/doc/inspectord/copyright
  share/doc/inspectord/README.md
  share/doc/inspectord/PROTOCOL.md
  share/doc/inspectord/onnxruntime/LICENSE
  share/doc/inspectord/examples/genicam.conf
)
for prefix in /usr /usr/local; do
  dest=$tmp/install$(tr / - <<<"$prefix")
  make --no-print-directory install DESTDIR="$dest" PREFIX="$prefix" > "$tmp/install.log" ||
    { cat "$tmp/install.log" >&2; problem "make install PREFIX=$prefix failed"; continue; }
  for f in "${install_files[@]}"; do
    [[ -f $dest$prefix/$f ]] || problem "make install PREFIX=$prefix: $prefix/$f missing"
  done
  [[ -f $dest/etc/inspectord/inspectord.toml ]] || problem "make install PREFIX=$prefix: /etc/inspectord/inspectord.toml missing"
  [[ -f $dest/etc/inspectord/gateway.toml ]] || problem "make install PREFIX=$prefix: /etc/inspectord/gateway.toml missing"
  grep -qx "ExecStart=$prefix/bin/inspectord gateway --config /etc/inspectord/gateway.toml" \
    "$dest$prefix/lib/systemd/system/inspectord-gateway.service" ||
    problem "make install PREFIX=$prefix: the gateway unit does not run $prefix/bin/inspectord"
  cmp -s "$dest$prefix/bin/inspectord" "${CARGO_TARGET_DIR:-target}/release/inspectord" ||
    problem "make install PREFIX=$prefix: bin/inspectord is not the release build"
  unit=$dest$prefix/lib/systemd/system/inspectord.service
  grep -qx "ExecStart=$prefix/bin/inspectord run --config /etc/inspectord/inspectord.toml" "$unit" ||
    problem "make install PREFIX=$prefix: ExecStart= does not run $prefix/bin/inspectord"
  if [[ $prefix != /usr ]]; then
    grep -q '/usr/bin/inspectord' "$unit" && problem "make install PREFIX=$prefix: the unit still names /usr/bin/inspectord"
    grep -qx "onnxruntime = \"$prefix/lib/inspectord/libonnxruntime.so\"" "$dest/etc/inspectord/inspectord.toml" ||
      problem "make install PREFIX=$prefix: runtime.onnxruntime not set to $prefix/lib/inspectord"
    grep -q "^path = \"$prefix/share/inspectord/models/elpv-lite0.onnx\"" "$dest/etc/inspectord/inspectord.toml" ||
      problem "make install PREFIX=$prefix: model path not under $prefix"
  else
    cmp -s "$dest/etc/inspectord/inspectord.toml" config/inspectord.production.toml ||
      problem "make install PREFIX=/usr: /etc/inspectord/inspectord.toml differs from config/inspectord.production.toml"
  fi
done
# A second install keeps an edited config and puts the new one beside it.
dest=$tmp/install-usr
echo "# edited" >> "$dest/etc/inspectord/inspectord.toml"
make --no-print-directory install DESTDIR="$dest" > "$tmp/install.log"
tail -n 1 "$dest/etc/inspectord/inspectord.toml" | grep -qx '# edited' ||
  problem "make install overwrote an edited /etc/inspectord/inspectord.toml"
cmp -s "$dest/etc/inspectord/inspectord.toml.dist" config/inspectord.production.toml ||
  problem "make install did not write inspectord.toml.dist beside an edited config"

if [[ $fail -ne 0 ]]; then
  exit 1
fi
echo "package: $deb ok ($(du -h "$deb" | cut -f1)); make install ok"
