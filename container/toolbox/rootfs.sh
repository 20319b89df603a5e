#!/usr/bin/env bash
# Makes the toolbox image's Debian bookworm root filesystem as a tarball, from Debian's
# packages only (called by container/toolbox/build.sh; its hash, with packages.txt, keys
# the cache, so edit this file only to change the rootfs).
#
# Usage: rootfs.sh OUTPUT.tar
#
# mmdebstrap's `apt` variant (Essential packages + apt) plus packages.txt, without
# Recommends, documentation, man pages or translations; its hooks add the agent user
# (uid/gid 10001, like the small image; the host runs each session as its own uid anyway)
# and the mount points of DESIGN §3. mmdebstrap removes apt's lists and caches itself.
#
# Environment:
#   TOOLBOX_MIRROR  Debian mirror (default http://deb.debian.org/debian)
#   TOOLBOX_SECURITY_MIRROR  (default http://deb.debian.org/debian-security)
set -euo pipefail

output="${1:?usage: rootfs.sh OUTPUT.tar}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mirror="${TOOLBOX_MIRROR:-http://deb.debian.org/debian}"
security="${TOOLBOX_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

packages="$(grep -v '^[[:space:]]*\(#\|$\)' "$here/packages.txt" | tr -s '[:space:]' ',' | sed 's/,$//')"
[ -n "$packages" ] || { echo "rootfs.sh: packages.txt lists no package" >&2; exit 1; }

# Documentation and translations are dead weight for an agent; copyright files stay.
mmdebstrap \
  --variant=apt \
  --mode=root \
  --format=tar \
  --aptopt='APT::Install-Recommends "false"' \
  --aptopt='APT::Install-Suggests "false"' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --include="$packages" \
  --customize-hook='mkdir -p "$1/session/in" "$1/session/out" "$1/session/work" "$1/group"' \
  --customize-hook='chmod 1777 "$1/tmp"' \
  --customize-hook='echo "agent:x:10001:10001:crabpot agent:/session/work:/bin/bash" >>"$1/etc/passwd"' \
  --customize-hook='echo "agent:x:10001:" >>"$1/etc/group"' \
  --customize-hook='echo "agent:*:19000:0:99999:7:::" >>"$1/etc/shadow"' \
  bookworm "$output" \
  "deb $mirror bookworm main" \
  "deb $mirror bookworm-updates main" \
  "deb $security bookworm-security main"
