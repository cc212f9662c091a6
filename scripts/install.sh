#!/usr/bin/env bash
# `make install`: installs what the Debian package holds, for systems without dpkg.
#   make build onnxruntime && sudo make install [PREFIX=/usr] [DESTDIR=]
#   then: systemd-sysusers inspectord.conf; systemd-tmpfiles --create inspectord.conf;
#         systemctl daemon-reload
# PREFIX: /usr (default) or /usr/local (both are on systemd's unit, sysusers.d and tmpfiles.d
# search paths); the units' ExecStart=, the config's model paths and, when the library is not in
# /usr/lib/inspectord (where the daemon looks by itself), runtime.onnxruntime are rewritten to
# match. The config always goes to /etc/inspectord (the unit's ConfigurationDirectory=); an
# existing one is never overwritten: the new one is installed beside it as inspectord.toml.dist
# (FORCE_CONFIG=1 overwrites). The Modbus bridge's and the gateway's configs (modbus.toml,
# gateway.toml) are installed once and never replaced. Does not build: run it as root without a
# Rust toolchain.
set -euo pipefail
if [[ $# -gt 0 ]]; then   # no options: settings come from the environment (above)
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
  [[ $1 == -h || $1 == --help ]] && exit 0
  echo "install: unexpected argument '$1' (use PREFIX=, DESTDIR=, FORCE_CONFIG= in the environment)" >&2
  exit 2
fi
cd "$(dirname "$0")/.."

PREFIX=${PREFIX:-/usr}
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX%/}
BINDIR=$PREFIX/bin
LIBDIR=$PREFIX/lib
DATADIR=$PREFIX/share
DOCDIR=$DATADIR/doc/inspectord
UNITDIR=$LIBDIR/systemd/system
SYSUSERSDIR=$LIBDIR/sysusers.d
TMPFILESDIR=$LIBDIR/tmpfiles.d
CONFDIR=/etc/inspectord

bin=${CARGO_TARGET_DIR:-target}/release/inspectord
ort=third_party/onnxruntime
[[ -x $bin ]] || { echo "install: $bin missing: run 'make build' first" >&2; exit 1; }
[[ -e $ort/lib/libonnxruntime.so ]] || { echo "install: $ort missing: run 'make onnxruntime' first" >&2; exit 1; }

# The shipped files name /usr paths; map them to this PREFIX (a no-op for PREFIX=/usr).
subst=(-e "s|/usr/bin/inspectord|$BINDIR/inspectord|g"
       -e "s|/usr/share/doc/inspectord|$DOCDIR|g"
       -e "s|/usr/share/inspectord|$DATADIR/inspectord|g"
       -e "s|/usr/lib/inspectord|$LIBDIR/inspectord|g")
if [[ $LIBDIR != /usr/lib ]]; then
  subst+=(-e 's|^# onnxruntime = |onnxruntime = |')
fi

put() { # put MODE SOURCE DEST [sed]: install one file, optionally through the path mapping
  local mode=$1 src=$2 dest=$DESTDIR$3
  install -d -m 0755 "$(dirname "$dest")"
  if [[ ${4:-} == sed ]]; then
    sed "${subst[@]}" "$src" > "$dest.tmp"
    install -m "$mode" "$dest.tmp" "$dest"
    rm -f "$dest.tmp"
  else
    install -m "$mode" "$src" "$dest"    # follows symlinks (libonnxruntime.so)
  fi
  echo "  $3"
}

echo "install: into ${DESTDIR:-/} with PREFIX=$PREFIX"
put 0755 "$bin" "$BINDIR/inspectord"
put 0644 "$ort/lib/libonnxruntime.so" "$LIBDIR/inspectord/libonnxruntime.so"
put 0644 models/elpv-siamese.onnx "$DATADIR/inspectord/models/elpv-siamese.onnx"
put 0644 models/elpv-references.safetensors "$DATADIR/inspectord/models/elpv-references.safetensors"
put 0644 models/elpv-lite0.onnx "$DATADIR/inspectord/models/elpv-lite0.onnx"
put 0644 models/elpv-lite0-references.safetensors "$DATADIR/inspectord/models/elpv-lite0-references.safetensors"
put 0644 systemd/inspectord.service "$UNITDIR/inspectord.service" sed
put 0644 systemd/inspectord.socket "$UNITDIR/inspectord.socket" sed
put 0644 systemd/inspectord-modbus.service "$UNITDIR/inspectord-modbus.service" sed
put 0644 systemd/inspectord-modbus.socket "$UNITDIR/inspectord-modbus.socket" sed
put 0644 systemd/inspectord-gateway.service "$UNITDIR/inspectord-gateway.service" sed
put 0644 systemd/inspectord.sysusers "$SYSUSERSDIR/inspectord.conf"
put 0644 systemd/inspectord.tmpfile "$TMPFILESDIR/inspectord.conf"
put 0644 README.md "$DOCDIR/README.md"
put 0644 docs/PROTOCOL.md "$DOCDIR/PROTOCOL.md"
put 0644 docs/PLC.md "$DOCDIR/PLC.md"
put 0644 config/modbus.toml "$DOCDIR/examples/modbus.toml"
put 0644 docs/GATEWAY.md "$DOCDIR/GATEWAY.md"
put 0644 docs/FLEET.md "$DOCDIR/FLEET.md"
put 0644 config/gateway.toml "$DOCDIR/examples/gateway.toml"
put 0644 models/README.md "$DOCDIR/models/README.md"
put 0644 debian/copyright "$DOCDIR/copyright"
put 0644 "$ort/LICENSE" "$DOCDIR/onnxruntime/LICENSE"
put 0644 "$ort/ThirdPartyNotices.txt" "$DOCDIR/onnxruntime/ThirdPartyNotices.txt"
put 0644 config/inspectord.toml "$DOCDIR/examples/inspectord.toml"
put 0644 config/uvc.example.toml "$DOCDIR/examples/uvc.example.toml"
put 0644 config/genicam.example.toml "$DOCDIR/examples/genicam.example.toml"
put 0644 systemd/genicam.conf "$DOCDIR/examples/genicam.conf" sed

# The config: never replace one that is there (it holds the site's camera and references).
conf=$DESTDIR$CONFDIR/inspectord.toml
install -d -m 0755 "$DESTDIR$CONFDIR"
sed "${subst[@]}" config/inspectord.production.toml > "$conf.new"
if [[ ! -e $conf || ${FORCE_CONFIG:-0} == 1 ]]; then
  install -m 0644 "$conf.new" "$conf"
  echo "  $CONFDIR/inspectord.toml"
elif cmp -s "$conf.new" "$conf"; then
  echo "  $CONFDIR/inspectord.toml (unchanged)"
else
  install -m 0644 "$conf.new" "$conf.dist"
  echo "  $CONFDIR/inspectord.toml.dist (kept your $CONFDIR/inspectord.toml; compare and merge)"
fi
rm -f "$conf.new"
# The Modbus bridge's and the gateway's configs: installed once, never replaced.
for extra in modbus gateway; do
  if [[ ! -e $DESTDIR$CONFDIR/$extra.toml ]]; then
    install -m 0644 "config/$extra.toml" "$DESTDIR$CONFDIR/$extra.toml"
    echo "  $CONFDIR/$extra.toml"
  fi
done

if [[ -z $DESTDIR ]]; then
  cat <<EOF
install: next, as root:
  systemd-sysusers inspectord.conf && systemd-tmpfiles --create inspectord.conf
  systemctl daemon-reload
  edit $CONFDIR/inspectord.toml, then: systemctl enable --now inspectord.socket inspectord.service
  optional: the PLC bridge (docs/PLC.md): systemctl enable --now inspectord-modbus.socket
  optional: the gateway (docs/GATEWAY.md): edit $CONFDIR/gateway.toml, then:
            systemctl enable --now inspectord-gateway.service
EOF
fi
