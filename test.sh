#!/usr/bin/env bash
# Runs hatchery's whole test suite: formatting, lints, unit, integration and doc tests.
#
#   ./test.sh                  the suite
#   ./test.sh --fuzz SECONDS   the suite, then each fuzz target for SECONDS
#   ./test.sh --docker         the integration and unit test binaries again, inside a
#                              Docker container started as docs/deploy.md says (no
#                              --privileged); see docker/run-tests.sh
#
# Meant for a fresh Debian machine, run as root: the sandbox tests create user, pid,
# mount and network namespaces. What is missing is installed first, each step announced:
# the tools the tests run (iproute2, python3), a C linker (gcc, libc6-dev) and, without
# cargo, Rust itself through rustup (Debian's own rustc is older than the crate's
# rust-version). As a normal user nothing is installed (what is missing is named), and
# the privileged tests skip, unless HATCHERY_TESTS_MUST_RUN=1 (CI sets it), where they
# fail instead.
set -euo pipefail
cd "$(dirname "$0")"

fuzz_seconds=""
docker=0
while [ $# -gt 0 ]; do
    case "$1" in
        --fuzz) fuzz_seconds="${2:?--fuzz takes a number of seconds}"; shift 2 ;;
        --docker) docker=1; shift ;;
        *) echo "test.sh: unknown argument $1 (usage: ./test.sh [--fuzz SECONDS] [--docker])" >&2; exit 2 ;;
    esac
done

log() { printf '\n==> %s\n' "$*"; }

# --- What the tests need from the machine -------------------------------------------
# Tests run /bin/sh, cat and the like inside sandboxes; all are in Debian's essential
# set, but iproute2 is not. Only install when something is actually missing, so a warm
# machine pays nothing.
missing=()
why=()
for tool in sh cat id; do
    command -v "$tool" >/dev/null || { missing+=("coreutils"); why+=("$tool for the sandboxed commands"); }
done
# The network tests make and inspect veths of their own with `ip`.
command -v ip >/dev/null || { missing+=("iproute2"); why+=("ip for the network tests"); }
# A daemon with a veth pool loads its policy's nftables table with \`nft\`.
command -v nft >/dev/null || [ -x /usr/sbin/nft ] || { missing+=("nftables"); why+=("nft for the veth policy"); }
# tests/docs_client.rs runs the protocol doc's Python client, docs/client.py.
command -v python3 >/dev/null || { missing+=("python3"); why+=("python3 for docs/client.py"); }
# The Python package's tests run in a venv of their own; Debian splits venv (and the
# ensurepip it needs) out of python3.
command -v python3 >/dev/null && python3 -c 'import ensurepip, venv' 2>/dev/null ||
    { missing+=("python3-venv"); why+=("python3 -m venv for the Python package's tests"); }
# tests/service.rs checks the systemd units hatchery writes with `systemd-analyze verify`
# (Debian's systemd package; nothing is started, systemd need not be running).
command -v systemd-analyze >/dev/null || { missing+=("systemd"); why+=("systemd-analyze for the unit checks"); }
# rustc links with the system's C compiler driver; libc6-dev has the C runtime files.
command -v cc >/dev/null || { missing+=("gcc" "libc6-dev"); why+=("a C linker (cc) for rustc"); }
# rustup is fetched with curl.
command -v cargo >/dev/null || [ -x "$HOME/.cargo/bin/cargo" ] || command -v curl >/dev/null ||
    { missing+=("curl" "ca-certificates"); why+=("curl to fetch rustup"); }
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "test.sh: missing: ${why[*]}; as root: apt-get install ${missing[*]}" >&2
    else
        log "installing ${missing[*]} with apt-get, for: $(printf '%s; ' "${why[@]}")"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
fi

# Rust: Debian's packaged rustc is older than the rust-version of Cargo.toml, so it comes
# from rustup, into ~/.cargo, with the components the suite runs.
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null; then
    log "no cargo: installing Rust with rustup (https://rustup.rs) into $HOME/.cargo"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
        sh -s -- -y --profile minimal -c rustfmt,clippy
    export PATH="$HOME/.cargo/bin:$PATH"
fi
need=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
have=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n 1)" != "$need" ]; then
    echo "test.sh: rustc $have is older than the crate's rust-version $need (rustup update stable)" >&2
    exit 1
fi
log "using $(rustc --version) and $(cargo --version)"
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

# tests/service.rs validates deploy/kubernetes/ against the Kubernetes schemas with PyPI's
# kubernetes-validate (schemas included: offline once installed), in a venv of its own.
if ! target/k8s-venv/bin/python -c 'import kubernetes_validate' 2>/dev/null; then
    log "making target/k8s-venv with kubernetes-validate, for the Kubernetes manifest checks"
    python3 -m venv target/k8s-venv && target/k8s-venv/bin/pip install -q kubernetes-validate==1.37.0 ||
        { command -v apt-get >/dev/null && [ "$(id -u)" = 0 ] &&
          apt-get install -y -qq python3-venv && rm -rf target/k8s-venv &&
          python3 -m venv target/k8s-venv && target/k8s-venv/bin/pip install -q kubernetes-validate==1.37.0; } ||
        echo "test.sh: cannot make target/k8s-venv (python3-venv, PyPI); the manifest checks will skip or fail" >&2
fi

export RUST_BACKTRACE=1
export CARGO_TERM_COLOR=never

log "cargo fmt --check"
cargo fmt --check

log "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings

# The client alone (`default-features = false`): it must build, lint and document
# cleanly without the daemon's side, and its doc examples must compile. (The harness
# test checks that it pulls in none of the daemon's dependencies.)
log "the client alone: cargo clippy and doc tests with --no-default-features"
cargo clippy --no-default-features --all-targets --quiet -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-default-features --no-deps --quiet
cargo test --no-default-features --lib --quiet
cargo test --no-default-features --doc --quiet

# --- The MCP client of tests/mcp.rs -------------------------------------------------------
# The Python `mcp` package, pinned, in a venv of its own: tests/mcp_client.py drives
# `hatchery mcp` with it. Made once, again when the pin changes.
mcp_venv=target/mcp-venv
mcp_pin=2.3.0
if ! "$mcp_venv/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("mcp") != sys.argv[1])' "$mcp_pin" 2>/dev/null; then
    log "making $mcp_venv with mcp==$mcp_pin (PyPI) for tests/mcp.rs"
    rm -rf "$mcp_venv"
    { python3 -m venv "$mcp_venv" && "$mcp_venv/bin/pip" install --quiet "mcp==$mcp_pin"; } ||
        echo "test.sh: cannot make $mcp_venv: tests/mcp.rs skips its client test (fails under HATCHERY_TESTS_MUST_RUN=1)" >&2
fi
export HATCHERY_MCP_PYTHON="$PWD/$mcp_venv/bin/python"

log "cargo test"
test_log=$(mktemp)
trap 'rm -f "$test_log"' EXIT
cargo test --no-fail-fast 2>&1 | tee "$test_log"

# --- The Python package -----------------------------------------------------------------
# python/ (hatchery-sandbox) installed as a user would (`pip install ./python`, with
# pytest) into a venv under target/, then its tests against this build's daemon. Its
# native half (python/native) is built in the debug profile into target/, sharing what
# `cargo test` compiled.
log "the Python package: its native half's fmt and clippy, pip install ./python, pytest"
cargo build --quiet --bins
cargo fmt --check --manifest-path python/native/Cargo.toml
cargo clippy --quiet --all-targets --manifest-path python/native/Cargo.toml --target-dir target \
    -- -D warnings
venv=target/python-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
HATCHERY_NATIVE_PROFILE=debug CARGO_TARGET_DIR="$PWD/target" \
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "./python[test]"
HATCHERY_BIN="$PWD/target/debug/hatchery" "$venv/bin/python" -m pytest -q -p no:cacheprovider \
    python 2>&1 | tee -a "$test_log"
[ "${PIPESTATUS[0]}" = 0 ] || { echo "test.sh: the Python package's tests failed" >&2; exit 1; }

# --- The benchmarks, once over -----------------------------------------------------------
# Each benchmark in quick mode (a few rounds, no figures kept), so that one that crashes
# fails CI. Built in the test profile: a release build of them would add minutes, and
# the figures of a quick run mean nothing anyway. `cargo test --bench` runs a
# `harness = false` benchmark's main with no arguments. The preload benchmark runs the
# example zygote of its own profile, which `cargo test` has built.
log "the benchmarks in quick mode"
cargo build --quiet --example preloaded_zygote
for bench in spawn seccomp network preload mcp; do
    log "benchmark $bench (quick)"
    HATCHERY_BENCH_QUICK=1 cargo test --quiet --bench "$bench" || {
        echo "test.sh: the $bench benchmark failed in quick mode" >&2
        exit 1
    }
done
# The Python zygote's benchmark (benches/python_zygote.py), with the test venv's package
# and a standard-library preload; its own script, python_zygote.sh, measures numpy and
# pandas against pyspawner.
log "benchmark python_zygote (quick)"
HATCHERY_BENCH_QUICK=1 HATCHERY_BIN="$PWD/target/debug/hatchery" \
    target/python-venv/bin/python benches/python_zygote.py || {
    echo "test.sh: the python_zygote benchmark failed in quick mode" >&2
    exit 1
}

# --- Fuzzing ---------------------------------------------------------------------------
# The targets live in tests/fuzz (wire decoder, request checks, the CLI's unit parsers),
# seeded with the protocol's golden messages. cargo-fuzz needs sanitizer flags that only
# nightly Rust accepts; RUSTC_BOOTSTRAP lets this stable toolchain take them. A crash
# leaves its input in tests/fuzz/artifacts/TARGET/: add it to the seeds and turn it into
# a regression test.
if [ -n "$fuzz_seconds" ]; then
    command -v cargo-fuzz >/dev/null || { log "installing cargo-fuzz"; cargo install --locked --quiet cargo-fuzz; }
    for target in wire_decode sandbox_request cli_units; do
        log "fuzzing $target for ${fuzz_seconds}s"
        corpus=$(mktemp -d)
        if ! RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir tests/fuzz "$target" "$corpus" \
            "tests/fuzz/seeds/$target" -- -max_total_time="$fuzz_seconds" >"$corpus.log" 2>&1; then
            tail -n 60 "$corpus.log" >&2
            echo "test.sh: fuzz target $target found a failure (input in tests/fuzz/artifacts/$target/)" >&2
            exit 1
        fi
        grep -E "^Done [0-9]+ runs" "$corpus.log" || { tail -n 20 "$corpus.log" >&2; exit 1; }
        rm -rf "$corpus" "$corpus.log"
    done
fi

# --- Inside Docker ----------------------------------------------------------------------
# The same test binaries, run in a container of docker/Dockerfile's image started the
# documented way. Their results join the closing line below.
if [ "$docker" = 1 ]; then
    log "the test binaries inside Docker"
    docker/run-tests.sh 2>&1 | tee -a "$test_log"
    [ "${PIPESTATUS[0]}" = 0 ] || { echo "test.sh: the suite failed inside Docker" >&2; exit 1; }
fi

# One closing line for the whole run, summed over every test binary (cargo's "test
# result:" lines) and pytest's closing line ("67 passed, 1 skipped in 2.68s").
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     /^[0-9]+ (passed|failed|skipped|error).* in [0-9.]+s/ { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^(failed|errors?)/) f += $i; if ($(i+1) ~ /^skipped/) s += $i } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$test_log"
