#!/usr/bin/env bash
# Builds the toolbox image `crabpot-agent-toolbox:latest` offline (called by
# `make image-toolbox`).
#
# Steps: hash packages.txt and rootfs.sh; if the base image `crabpot-agent-toolbox-base:<hash>`
# is missing, import it from the cached rootfs tarball /var/tmp/crabpot-toolbox/rootfs-<hash>.tar,
# making that first with rootfs.sh (mmdebstrap, Debian's packages) when it is missing too;
# build the same static agent-runner as `make image` (cargo is a no-op when it is current);
# build container/toolbox/Dockerfile FROM the base with the legacy builder
# (`DOCKER_BUILDKIT=0`), or, if that builder is unavailable, create a container of the base,
# copy the runner in and commit it with the same settings. Nothing is pulled. The image is
# labelled with a hash of what went into it (base image id, runner binary, Dockerfile): a
# rerun with nothing changed finds that label, skips mmdebstrap, the import and the image
# build, and takes seconds. Prints the image size and the time taken. Older base images and
# tarballs are removed when nothing uses them.
#
# Environment:
#   AGENT_RUNNER_BIN    use this (static) binary instead of building the runner
#   IMAGE_TAG           image tag (default crabpot-agent-toolbox:latest)
#   IMAGE_BUILDER       `commit` skips the legacy builder (default: try it, then commit)
#   TOOLBOX_CACHE_DIR   rootfs tarball cache (default /var/tmp/crabpot-toolbox)
#   CARGO_TARGET_DIR    honoured when locating the built runner
set -euo pipefail

readonly TARGET_TRIPLE=x86_64-unknown-linux-gnu
readonly IMAGE_TAG="${IMAGE_TAG:-crabpot-agent-toolbox:latest}"
readonly BASE_REPO=crabpot-agent-toolbox-base
readonly AGENT_UID_GID=10001:10001
readonly INPUTS_LABEL=crabpot.toolbox.inputs
readonly CACHE_DIR="${TOOLBOX_CACHE_DIR:-/var/tmp/crabpot-toolbox}"

log() { printf 'toolbox/build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../.." && pwd)"
cd "$repo_root"
started_at="$(date +%s)"

# shellcheck source=container/runner.sh
source "$repo_root/container/runner.sh"

recipe_hash() {
  cat "$here/packages.txt" "$here/rootfs.sh" | sha256sum | cut -c1-16
}

ensure_base() {
  local hash="$1" base="$BASE_REPO:$1" tarball="$CACHE_DIR/rootfs-$1.tar"
  if docker image inspect "$base" >/dev/null 2>&1; then
    log "base $base is present (rootfs cached)"
    return
  fi
  mkdir -p "$CACHE_DIR"
  if [ ! -s "$tarball" ]; then
    command -v mmdebstrap >/dev/null 2>&1 ||
      die "mmdebstrap is not installed (apt-get install mmdebstrap, or run tests/deps/install.sh)"
    [ "$(id -u)" -eq 0 ] || die "mmdebstrap needs root here (--mode=root); run as root"
    log "making the Debian rootfs with mmdebstrap into $tarball (minutes, once)"
    local t0
    t0="$(date +%s)"
    rm -f "$tarball.partial"
    bash "$here/rootfs.sh" "$tarball.partial"
    mv "$tarball.partial" "$tarball"
    log "rootfs made in $(($(date +%s) - t0)) s: $(du -h "$tarball" | cut -f1)"
  fi
  log "importing $tarball as $base"
  docker import "$tarball" "$base" >/dev/null
  # Older recipes' bases and tarballs: drop them when nothing uses them.
  local other
  for other in $(docker image ls --format '{{.Repository}}:{{.Tag}}' "$BASE_REPO"); do
    [ "$other" = "$base" ] || docker image rm "$other" >/dev/null 2>&1 || true
  done
  find "$CACHE_DIR" -maxdepth 1 -name 'rootfs-*.tar*' ! -name "rootfs-$hash.tar" -delete
}

# The hash of everything the final image is made of.
inputs_hash() {
  local base="$1"
  {
    docker image inspect --format '{{.Id}}' "$base"
    sha256sum <"$runner_bin"
    cat "$here/Dockerfile"
  } | sha256sum | cut -c1-16
}

build_image() {
  local base="$1" context="$2" inputs="$3"
  cp "$here/Dockerfile" "$context/Dockerfile"
  cp "$runner_bin" "$context/agent-runner"
  chmod 0755 "$context/agent-runner"
  if [ "${IMAGE_BUILDER:-}" != commit ]; then
    log "building $IMAGE_TAG with the legacy builder"
    if DOCKER_BUILDKIT=0 docker build --quiet --build-arg "BASE_IMAGE=$base" \
      --label "$INPUTS_LABEL=$inputs" --tag "$IMAGE_TAG" "$context" >/dev/null; then
      return
    fi
    log "the legacy builder failed or is unavailable; committing a container instead"
  fi
  # Keep these in step with container/toolbox/Dockerfile.
  local container
  container="$(docker create "$base" /bin/true)"
  docker cp "$context/agent-runner" "$container:/usr/local/bin/agent-runner"
  docker commit \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
    --change "USER $AGENT_UID_GID" \
    --change 'WORKDIR /session/work' \
    --change 'ENTRYPOINT ["/usr/local/bin/agent-runner"]' \
    --change 'CMD []' \
    --change "LABEL $INPUTS_LABEL=$inputs" \
    "$container" "$IMAGE_TAG" >/dev/null
  docker rm "$container" >/dev/null
}

main() {
  command -v docker >/dev/null 2>&1 || die "the docker CLI is not installed"
  docker version >/dev/null 2>&1 || die "docker is unreachable (is the daemon running? DOCKER_HOST?)"
  local hash base
  hash="$(recipe_hash)"
  base="$BASE_REPO:$hash"
  ensure_base "$hash"
  build_runner

  local inputs current
  inputs="$(inputs_hash "$base")"
  current="$(docker image inspect --format "{{index .Config.Labels \"$INPUTS_LABEL\"}}" "$IMAGE_TAG" 2>/dev/null || true)"
  if [ "$current" = "$inputs" ]; then
    log "$IMAGE_TAG is up to date (inputs $inputs), checked in $(($(date +%s) - started_at)) s"
    printf '%s up to date\n' "$IMAGE_TAG"
    return
  fi

  local stage
  stage="$(mktemp -d "${TMPDIR:-/tmp}/crabpot-toolbox.XXXXXX")"
  # shellcheck disable=SC2064 # expand now: the trap must remove this very directory
  trap "rm -rf '$stage'" EXIT

  local previous_id new_id size_bytes size_mb
  previous_id="$(docker image inspect --format '{{.Id}}' "$IMAGE_TAG" 2>/dev/null || true)"
  build_image "$base" "$stage" "$inputs"
  new_id="$(docker image inspect --format '{{.Id}}' "$IMAGE_TAG")"
  if [ -n "$previous_id" ] && [ "$previous_id" != "$new_id" ]; then
    # The replaced image is now untagged; keep it only while a container still uses it.
    docker image rm "$previous_id" >/dev/null 2>&1 || true
  fi

  size_bytes="$(docker image inspect --format '{{.Size}}' "$IMAGE_TAG")"
  size_mb="$(awk -v bytes="$size_bytes" 'BEGIN { printf "%.1f", bytes / 1000000 }')"
  log "built $IMAGE_TAG (${new_id#sha256:}) on $base in $(($(date +%s) - started_at)) s: ${size_mb} MB"
  printf '%s %s MB\n' "$IMAGE_TAG" "$size_mb"
}

main "$@"
