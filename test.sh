#!/usr/bin/env bash
# Runs hatchery's whole test suite: formatting, lints, unit, integration and doc tests.
#
# Meant for a fresh Debian machine with the Rust toolchain (cargo, rustfmt, clippy), run
# as root: the sandbox tests create user, pid, mount and network namespaces. As a normal
# user the privileged tests skip, unless HATCHERY_TESTS_MUST_RUN=1 (CI sets it), where
# they fail instead.
set -euo pipefail
cd "$(dirname "$0")"

log() { printf '\n==> %s\n' "$*"; }

# --- What the tests need from the machine -------------------------------------------
# Tests run /bin/sh, cat and the like inside sandboxes; all are in Debian's essential
# set. Only install when something is actually missing, so a warm machine pays nothing.
missing=()
for tool in sh cat id; do
    command -v "$tool" >/dev/null || missing+=("coreutils")
done
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
for component in fmt clippy; do
    cargo "$component" --version >/dev/null 2>&1 || {
        echo "test.sh: cargo $component is missing (rustup component add ${component/fmt/rustfmt})" >&2
        exit 1
    }
done

# Say up front why privileged tests would not run, rather than leave it to each test.
if [ "$(cat /proc/sys/user/max_user_namespaces 2>/dev/null || echo 0)" = 0 ]; then
    echo "test.sh: user namespaces are disabled (user.max_user_namespaces = 0)" >&2
    [ "${HATCHERY_TESTS_MUST_RUN:-0}" = 1 ] && exit 1
fi

export RUST_BACKTRACE=1
export CARGO_TERM_COLOR=never

log "cargo fmt --check"
cargo fmt --check

log "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings

log "cargo test"
cargo test --no-fail-fast
