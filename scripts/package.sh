#!/usr/bin/env bash
# Builds the Debian package of kairan (cargo-deb, release build) and checks it on this machine:
# installs it with dpkg -i, runs the installed `kairan --version`, checks the kairan user, the
# directories and their modes, verifies the installed systemd units with `systemd-analyze
# verify` (skipped with a notice where systemd-analyze is missing), and removes it again
# (dpkg -r, then --purge). Needs root for the dpkg steps (CI runs as root).
#
# The SBOM: when target/sbom/kairan.cdx.json exists (scripts/sbom.sh, cargo-cyclonedx), it is
# shipped beside the package as target/debian/kairan_<version>_<arch>.cdx.json; otherwise a
# notice says so (the hook is SBOM below).
#
# Usage: scripts/package.sh [--build-only]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build_only=0
[ "${1:-}" = "--build-only" ] && build_only=1

if ! command -v cargo-deb >/dev/null 2>&1; then
  echo "package: installing cargo-deb (cargo install --locked cargo-deb)"
  cargo install --locked --quiet cargo-deb
fi
if ! command -v dpkg-deb >/dev/null 2>&1; then
  echo "package: dpkg-deb is missing (not a Debian system?)" >&2
  exit 1
fi

# --- build -----------------------------------------------------------------------------------
# (Not `tee /dev/stderr`: when standard error is a file, as in a CI log, tee reopens it with
# O_TRUNC and wipes everything logged before.)
deb_log=$(mktemp)
cargo deb -p kairan-node --output target/debian >"$deb_log" 2>&1 || { cat "$deb_log" >&2; rm -f "$deb_log"; exit 1; }
cat "$deb_log" >&2
deb=$(grep -E '\.deb$' "$deb_log" | tail -1)
rm -f "$deb_log"
if [ ! -f "$deb" ]; then
  echo "package: cargo deb did not report a .deb" >&2
  exit 1
fi
echo "package: built $deb ($(du -h "$deb" | cut -f1))"
SBOM=$root/target/sbom/kairan.cdx.json
if [ -f "$SBOM" ]; then
  cp "$SBOM" "${deb%.deb}.cdx.json"
  echo "package: SBOM shipped as ${deb%.deb}.cdx.json"
else
  echo "package: NOTICE: no SBOM at target/sbom/kairan.cdx.json (scripts/sbom.sh makes it); none shipped"
fi

# --- what the package holds ------------------------------------------------------------------
contents=$(dpkg-deb --contents "$deb")
for path in ./usr/bin/kairan ./lib/systemd/system/kairan-node.service ./lib/systemd/system/kairan-clinic.service \
  ./etc/kairan/node.toml ./etc/kairan/clinic.toml ./usr/share/doc/kairan/examples/rabbitmq/README.md; do
  grep -qF " $path" <<<"$contents" || { echo "package: $path is missing from $deb" >&2; exit 1; }
done
conffiles=$(dpkg-deb --info "$deb" conffiles)
grep -qx /etc/kairan/node.toml <<<"$conffiles" || { echo "package: /etc/kairan/node.toml is not a conffile" >&2; exit 1; }
[ "$build_only" = 1 ] && exit 0

# --- install, check, remove ------------------------------------------------------------------
if [ "$(id -u)" != 0 ]; then
  echo "package: dpkg -i needs root; run with --build-only, or as root" >&2
  exit 1
fi
if dpkg -s kairan >/dev/null 2>&1; then
  echo "package: kairan is already installed here; not touching it" >&2
  exit 1
fi
cleanup() { dpkg --purge kairan >/dev/null 2>&1 || true; }
trap cleanup EXIT
DEBIAN_FRONTEND=noninteractive dpkg -i "$deb"
/usr/bin/kairan --version
getent passwd kairan >/dev/null || { echo "package: no kairan user after install" >&2; exit 1; }
check_dir() { # check_dir PATH MODE OWNER:GROUP
  local actual
  actual=$(stat -c '%a %U:%G' "$1")
  [ "$actual" = "$2 $3" ] || { echo "package: $1 is $actual, expected $2 $3" >&2; exit 1; }
}
check_dir /var/lib/kairan 750 kairan:kairan
check_dir /etc/kairan 750 root:kairan
check_dir /etc/kairan/keys 700 kairan:kairan
if command -v systemd-analyze >/dev/null 2>&1; then
  # kairan-publish@ runs as a separate origin user, which this package does not create.
  systemd-analyze verify /lib/systemd/system/kairan-node.service /lib/systemd/system/kairan-clinic.service
  echo "package: systemd-analyze verify passed"
else
  echo "package: NOTICE: systemd-analyze is not installed; the units were not verified"
fi
dpkg -r kairan
[ ! -e /usr/bin/kairan ] || { echo "package: /usr/bin/kairan left after dpkg -r" >&2; exit 1; }
dpkg --purge kairan
trap - EXIT
echo "package: $deb installs, runs and removes cleanly"
