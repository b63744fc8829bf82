#!/usr/bin/env bash
# Debian packages the test suite needs (PostgreSQL for the audit store tests; buildah and debootstrap for the
# image test, see scripts/image.sh: vfs storage and chroot isolation, so no fuse-overlayfs and no OCI runtime).
# Idempotent: installs only what is missing. Runs as root in CI; uses sudo otherwise when available.
set -euo pipefail
need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v buildah >/dev/null || need+=(buildah)
command -v debootstrap >/dev/null || need+=(debootstrap)
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || need+=(debian-archive-keyring)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
