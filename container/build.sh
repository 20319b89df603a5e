#!/usr/bin/env bash
# Builds the agent image `crabpot-agent:latest` offline (called by `make image`).
#
# Steps: make sure Debian's busybox-static provides a static /bin/busybox; build the
# agent-runner statically (`+crt-static`, explicit gnu target so the flag does not reach
# proc-macros); check both binaries are statically linked; stage a rootfs (busybox and
# applet links, the runner, /etc/passwd, mount points) in a temporary directory; build
# container/Dockerfile with the legacy builder (`DOCKER_BUILDKIT=0`: no buildx here),
# or, if that builder is unavailable, `docker import` the same rootfs with equivalent
# --change lines. Nothing is pulled. Prints the image size in MB. Idempotent: reruns
# rebuild the tag and drop the image it replaced when nothing uses it.
#
# Environment:
#   AGENT_RUNNER_BIN  use this (static) binary instead of building the runner
#   IMAGE_TAG         image tag (default crabpot-agent:latest)
#   IMAGE_BUILDER     `import` skips the legacy builder (default: try it, then import)
#   CARGO_TARGET_DIR  honoured when locating the built runner
set -euo pipefail

readonly TARGET_TRIPLE=x86_64-unknown-linux-gnu
readonly IMAGE_TAG="${IMAGE_TAG:-crabpot-agent:latest}"
readonly AGENT_UID_GID=10001:10001
readonly SIZE_TARGET_MB=15
# Applets the agent's shell tools rely on; the build fails if busybox lacks one.
readonly REQUIRED_APPLETS=(sh ls cat echo mkdir rm cp mv grep sed head tail wc find env
  sleep touch date id test '[' printf tr sort uniq awk xargs basename dirname which tee
  cut diff stat du df)
# Linked when this busybox has them.
readonly OPTIONAL_APPLETS=(ash '[[' ln chmod pwd true false expr seq readlink realpath
  mktemp rmdir od hexdump xxd md5sum sha1sum sha256sum sha512sum base64 gzip gunzip zcat
  tar unzip bzip2 bunzip2 xz unxz patch cmp comm fold nl paste rev tac shuf split
  strings timeout uname whoami ps kill pidof nproc less more vi yes egrep fgrep truncate
  time dos2unix unix2dos uuencode uudecode bc dc sha3sum free top tty)

log() { printf 'build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

# shellcheck source=container/runner.sh
source "$repo_root/container/runner.sh"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root to run: $*"
  fi
}

ensure_busybox() {
  if is_static /bin/busybox; then
    return
  fi
  log "installing busybox-static (Debian) for a static /bin/busybox"
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static; then
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static
  fi
  is_static /bin/busybox || die "/bin/busybox is still missing or not statically linked"
}


stage_rootfs() {
  local rootfs="$1" applet
  mkdir -p "$rootfs/bin" "$rootfs/usr/bin" "$rootfs/usr/local/bin" "$rootfs/etc" \
    "$rootfs/tmp" "$rootfs/session/in" "$rootfs/session/out" "$rootfs/session/work" \
    "$rootfs/group"
  chmod 1777 "$rootfs/tmp"
  cp /bin/busybox "$rootfs/bin/busybox"
  cp "$runner_bin" "$rootfs/usr/local/bin/agent-runner"
  chmod 0755 "$rootfs/bin/busybox" "$rootfs/usr/local/bin/agent-runner"

  local available
  available=" $(/bin/busybox --list | tr '\n' ' ') "
  for applet in "${REQUIRED_APPLETS[@]}"; do
    case "$available" in
      *" $applet "*) ln -sf busybox "$rootfs/bin/$applet" ;;
      *) die "busybox lacks the required applet '$applet'" ;;
    esac
  done
  for applet in "${OPTIONAL_APPLETS[@]}"; do
    case "$available" in
      *" $applet "*) ln -sf busybox "$rootfs/bin/$applet" ;;
      *) ;;
    esac
  done
  # Scripts with `#!/usr/bin/env ...` shebangs.
  ln -sf ../../bin/busybox "$rootfs/usr/bin/env"

  printf '%s\n' 'root:x:0:0:root:/:/bin/false' \
    "agent:x:${AGENT_UID_GID%%:*}:${AGENT_UID_GID##*:}:crabpot agent:/session/work:/bin/sh" \
    >"$rootfs/etc/passwd"
  printf '%s\n' 'root:x:0:' "agent:x:${AGENT_UID_GID##*:}:" >"$rootfs/etc/group"
}

build_image() {
  local context="$1"
  cp "$repo_root/container/Dockerfile" "$context/Dockerfile"
  if [ "${IMAGE_BUILDER:-}" != import ]; then
    log "building $IMAGE_TAG with the legacy builder"
    if DOCKER_BUILDKIT=0 docker build --quiet --tag "$IMAGE_TAG" "$context" >/dev/null; then
      return
    fi
    log "the legacy builder failed or is unavailable; importing the rootfs instead"
  fi
  # Keep these in step with container/Dockerfile.
  tar -C "$context/rootfs" --numeric-owner --owner=0 --group=0 -c . |
    docker import \
      --change 'ENV PATH=/usr/local/bin:/bin' \
      --change "USER $AGENT_UID_GID" \
      --change 'WORKDIR /session/work' \
      --change 'ENTRYPOINT ["/usr/local/bin/agent-runner"]' \
      - "$IMAGE_TAG" >/dev/null
}

main() {
  command -v docker >/dev/null 2>&1 || die "the docker CLI is not installed"
  docker version >/dev/null 2>&1 || die "docker is unreachable (is the daemon running? DOCKER_HOST?)"
  ensure_busybox
  build_runner

  local stage
  stage="$(mktemp -d "${TMPDIR:-/tmp}/crabpot-image.XXXXXX")"
  # shellcheck disable=SC2064 # expand now: the trap must remove this very directory
  trap "rm -rf '$stage'" EXIT
  stage_rootfs "$stage/rootfs"

  local previous_id new_id size_bytes size_mb
  previous_id="$(docker image inspect --format '{{.Id}}' "$IMAGE_TAG" 2>/dev/null || true)"
  build_image "$stage"
  new_id="$(docker image inspect --format '{{.Id}}' "$IMAGE_TAG")"
  if [ -n "$previous_id" ] && [ "$previous_id" != "$new_id" ]; then
    # The replaced image is now untagged; keep it only while a container still uses it.
    docker image rm "$previous_id" >/dev/null 2>&1 || true
  fi

  size_bytes="$(docker image inspect --format '{{.Size}}' "$IMAGE_TAG")"
  size_mb="$(awk -v bytes="$size_bytes" 'BEGIN { printf "%.1f", bytes / 1000000 }')"
  log "built $IMAGE_TAG (${new_id#sha256:}): ${size_mb} MB"
  if awk -v mb="$size_mb" -v max="$SIZE_TARGET_MB" 'BEGIN { exit !(mb > max) }'; then
    log "warning: the image is larger than the ${SIZE_TARGET_MB} MB target"
  fi
  printf '%s %s MB\n' "$IMAGE_TAG" "$size_mb"
}

main "$@"
