# Sourced by container/build.sh and container/toolbox/build.sh: the one recipe for the static
# agent-runner both images carry, so the two builds share cargo's output and cannot drift.
#
# Expects `log`, `die`, `repo_root` and `TARGET_TRIPLE` from the sourcing script. Honours
# AGENT_RUNNER_BIN (use this static binary instead of building) and CARGO_TARGET_DIR.
# `build_runner` sets `runner_bin`.

# Whether $1 is a statically linked executable (`file`, or `ldd` where `file` is missing).
is_static() {
  local path="$1" description
  [ -f "$path" ] || return 1
  if command -v file >/dev/null 2>&1; then
    description="$(file -L "$path")"
    case "$description" in
      *"statically linked"* | *"static-pie linked"*) return 0 ;;
      *) return 1 ;;
    esac
  fi
  description="$(ldd "$path" 2>&1 || true)"
  case "$description" in
    *"not a dynamic executable"* | *"statically linked"*) return 0 ;;
    *) return 1 ;;
  esac
}

# Builds the runner statically (`+crt-static`, explicit gnu target so the flag does not reach
# proc-macros) and checks it is static; it must run in any image, FROM scratch included.
build_runner() {
  if [ -n "${AGENT_RUNNER_BIN:-}" ]; then
    log "using AGENT_RUNNER_BIN=$AGENT_RUNNER_BIN instead of building the runner"
    [ -f "$AGENT_RUNNER_BIN" ] || die "AGENT_RUNNER_BIN=$AGENT_RUNNER_BIN does not exist"
    runner_bin="$AGENT_RUNNER_BIN"
  else
    log "building agent-runner (release, static, $TARGET_TRIPLE)"
    RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static" \
      cargo build --release -p agent-runner --target "$TARGET_TRIPLE"
    local target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
    case "$target_dir" in
      /*) ;;
      *) target_dir="$repo_root/$target_dir" ;;
    esac
    runner_bin="$target_dir/$TARGET_TRIPLE/release/agent-runner"
    [ -f "$runner_bin" ] || die "cargo did not produce $runner_bin"
  fi
  is_static "$runner_bin" || die "$runner_bin is dynamically linked; it must run in any image"
}
