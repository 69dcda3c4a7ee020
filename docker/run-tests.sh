#!/usr/bin/env bash
# Runs hatchery's test binaries inside a Docker container started as docs/deploy.md
# says: no --privileged, no capability beyond Docker's defaults for the daemon (the tests
# add CAP_SYS_PTRACE, see below), --network none, the seccomp profile
# docker/seccomp.json, and /proc unmasked (systempaths=unconfined). Called by
# `./test.sh --docker`; run as root.
#
# Nothing is pulled from a registry:
#   - no Docker engine running: installs docker.io if missing and starts
#     `dockerd --bridge=none --iptables=false`, stopped again at the end;
#   - the base image `hatchery-base:bookworm-iproute2` is made by docker/make-base.sh: a
#     debootstrap minbase rootfs with iproute2 (from the machine's own apt mirror),
#     imported with `docker import`; the rootfs tarball is cached in
#     $HATCHERY_DOCKER_CACHE (default /var/cache/hatchery-docker);
#   - the test binaries are built here on the host (a Debian bookworm host, so glibc
#     matches) and mounted read-only at the same path; the image is docker/Dockerfile's,
#     with this build's `hatchery` in it. No Rust toolchain in the image.
#
# Doc tests need rustdoc and test nothing about containers: they run natively only.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
cache=${HATCHERY_DOCKER_CACHE:-/var/cache/hatchery-docker}
base=hatchery-base:bookworm-iproute2
image=hatchery-test:latest

log() { printf '\n==> %s\n' "$*"; }
die() { echo "docker/run-tests.sh: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it may install and start a Docker engine)"

# --- A Docker engine ---------------------------------------------------------------------
install=()
command -v dockerd >/dev/null || install+=(docker.io)
command -v debootstrap >/dev/null || install+=(debootstrap)
if [ ${#install[@]} -gt 0 ]; then
    log "installing ${install[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${install[@]}" >/dev/null
fi
dockerd_pid=""
stop_dockerd() {
    if [ -n "$dockerd_pid" ]; then
        kill "$dockerd_pid" 2>/dev/null || true
        wait "$dockerd_pid" 2>/dev/null || true
    fi
}
trap stop_dockerd EXIT
if ! docker info >/dev/null 2>&1; then
    log "starting dockerd --bridge=none --iptables=false"
    mkdir -p "$cache"
    dockerd --bridge=none --iptables=false >"$cache/dockerd.log" 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 100); do
        docker info >/dev/null 2>&1 && break
        kill -0 "$dockerd_pid" 2>/dev/null || { tail -n 20 "$cache/dockerd.log" >&2; die "dockerd exited"; }
        sleep 0.2
    done
    docker info >/dev/null 2>&1 || die "dockerd did not come up (log: $cache/dockerd.log)"
fi

# --- The base image ----------------------------------------------------------------------
# Made as docs/deploy.md says, by docker/make-base.sh (with iproute2: the network tests
# read the veths and addresses with `ip`).
if ! docker image inspect "$base" >/dev/null 2>&1; then
    log "docker/make-base.sh $base iproute2"
    HATCHERY_DOCKER_CACHE="$cache" docker/make-base.sh "$base" iproute2
fi

# --- The test binaries and the image -----------------------------------------------------
log "building the test binaries"
binaries=$(cargo test --no-run --message-format=json 2>/dev/null \
    | grep '"profile":{[^}]*"test":true' | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | sort -u)
[ -n "$binaries" ] || die "cargo built no test binaries"
# tests/docs_client.rs runs docs/client.py with python3, which the image does not have;
# what it checks (the protocol document's client against daemons) does not depend on
# the container, and it runs natively.
binaries=$(printf '%s\n' $binaries | grep -v '/docs_client-')
echo "not run in Docker (runs natively): the tests of docs/client.py (tests/docs_client.rs)"
context=$(mktemp -d)
cp target/debug/hatchery "$context/"
docker build -q -f docker/Dockerfile --build-arg "BASE=$base" -t "$image" "$context" >/dev/null
rm -rf "$context"

# --- Run them ----------------------------------------------------------------------------
# The daemon's options are explained in docs/deploy.md: only the capabilities Docker gives
# every container and the host's cgroup tree writable (for the resource limits). Tests
# only: CAP_SYS_PTRACE, because the tests read the sandboxes' /proc/PID/ns links, which
# belong to another uid (the daemon does not need it).
run_options=(
    --rm --network none
    --security-opt "seccomp=$repo/docker/seccomp.json"
    --security-opt systempaths=unconfined
    --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw
    --cap-add SYS_PTRACE
    -v "$repo:$repo:ro" -w "$repo"
    -e HATCHERY_TESTS_MUST_RUN -e RUST_BACKTRACE=1
)
# Tests that cannot run in such a container, named here and run natively by test.sh.
not_in_docker=(
    # Mounts on the container's side to see whether they reach a running sandbox; the
    # container has no CAP_SYS_ADMIN, so it cannot mount at all.
    host_mounts_do_not_propagate_into_a_running_sandbox
    # Its control run expects the kernel's own answers without a filter (unshare works);
    # in a container Docker's filter answers first. The filtered half is covered in
    # Docker by tests/isolation.rs and tests/seccomp_policies.rs.
    seccomp::install::tests::default_policy_holds_in_a_child
    # Veth networks: the daemon opens a netlink socket inside each sandbox's network
    # namespace with setns(), which the kernel allows only with CAP_SYS_ADMIN in the
    # daemon's own user namespace (and Docker's profiles refuse setns without it); and a
    # daemon with a veth pool loads its policy's nftables table, which needs nft in the
    # image and CAP_NET_ADMIN. A container without them cannot give sandboxes a veth
    # network yet (docs/deploy.md); these run natively. The policy tests also make
    # network namespaces of their own (`ip netns add`). The network tests that start no
    # veth daemon still run here.
    a_name_clash_with_an_existing_interface_gets_the_next_name
    a_networked_child_talks_tcp_with_its_host_end_over_ipv4_and_ipv6
    a_restarted_daemon_removes_stale_pairs_of_its_prefix_only
    a_thousand_networked_spawns_two_at_a_time_leave_nothing_behind_and_never_stall
    pool_exhaustion_is_a_clear_error_and_a_subnet_returns_once_its_pair_is_gone
    the_cli_runs_a_networked_command
    the_interface_name_and_mtu_are_the_requests
    two_networked_children_reach_upstream_and_never_each_other
    a_pooled_networked_spawn_is_served_warm_and_talks_tcp_with_its_host_end
    a_shutdown_with_idle_networked_sandboxes_leaves_no_veth
    without_a_veth_the_child_has_only_lo_and_no_route_even_on_a_networking_daemon
    bad_veth_requests_are_invalid
    none_reaches_only_the_listed_host_port_and_is_refused_fast_everywhere_else
    internet_reaches_upstream_through_nat_and_is_refused_fast_on_private_and_host_addresses
    veth_allow_lifts_a_denied_range_and_veth_deny_adds_one
    a_daemon_killed_and_restarted_leaves_one_table_and_none_once_stopped
    a_sandbox_can_send_only_from_its_own_addresses
    internet_sandboxes_resolve_names_with_the_resolvers_they_are_given
    without_veth_dns_internet_sandboxes_get_the_hosts_resolvers_they_can_reach
    # Spare network and IPC namespaces: the daemon's helper needs CAP_SYS_ADMIN to
    # unshare them.
    # In such a container it says it cannot, and each sandbox makes its own, as the
    # whole suite run here shows.
    network_and_ipc_namespaces_are_made_ahead_and_the_helper_ends_with_the_daemon
    # The root templates: the daemon builds them with the new mount API (fsopen,
    # move_mount), which needs CAP_SYS_ADMIN in its own user namespace. In such a
    # container each sandbox assembles its own root and /dev, as the whole suite run
    # here shows.
    every_sandbox_attaches_a_copy_of_a_read_only_root_template
    binds_land_on_the_mount_points_of_a_template
    a_seventeenth_set_of_mount_points_gets_a_root_of_its_own
    # Connection floods: the flood is a python3 script run as another uid, and the image
    # has no Python; what they check (the daemon's accept loop and its bounds) does not
    # depend on the container.
    a_connection_flood_from_another_uid_cannot_stall_an_admitted_client
    a_daemon_out_of_fds_sheds_connections_without_spinning
    # They run cargo (the dependency tree, the locked versions); the image has none.
    the_client_alone_builds_none_of_the_daemons_dependencies
    rust_version_is_the_locked_dependencies_minimum
    # They compile their chroot's static program with cc; the image has no compiler.
    a_chroot_holding_one_static_binary_runs_it
    a_bind_into_a_missing_target_of_a_chroot_is_made_in_a_tmpfs
    a_chroots_symlinks_cannot_aim_mount_points_at_the_host
    # It tells a sandbox in the host's network namespace by the host's interfaces; a
    # container started with --network none has only lo, as the sandbox does.
    a_layer_is_switched_off_only_where_the_daemon_allows_it
    # They make mount namespaces with unshare (refused without CAP_SYS_ADMIN), run
    # systemd-analyze, or a venv's kubernetes-validate: none is in the image.
    a_masked_proc_under_systemd_is_named_in_systemds_words
    the_units_file_system_protection_leaves_spawns_binds_and_limits_working
    the_written_units_pass_systemd_analyze_verify
    the_kubernetes_manifest_validates_and_the_checker_catches_each_mistake
    an_unenforceable_limit_is_named_by_its_flag
    # They run python3 (a profile's example, the MCP client and its run_code, the pty
    # drivers) or ps inside the sandbox, which sees the image's files: it has neither.
    the_shipped_profiles_run_and_flags_override_them
    a_real_mcp_client_drives_the_server
    the_docs_worked_example_is_what_the_server_answers
    a_command_gets_a_terminal_of_the_sandboxes_own
    hatchery_exec_t_on_a_real_terminal
    hatchery_run_t_on_a_real_terminal
    hatchery_shell_on_a_real_terminal
    hatchery_shell_takes_runs_options
    tiocsti_and_tioclinux_are_refused_on_the_sandboxes_own_terminal
)
skip_args=()
for name in "${not_in_docker[@]}"; do
    skip_args+=(--skip "$name")
    echo "not run in Docker (runs natively): $name"
done
# Where AppArmor is on, Docker's default AppArmor profile refuses every mount, which the
# sandbox's setup needs (see docs/deploy.md).
if [ "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" = Y ]; then
    run_options+=(--security-opt apparmor=unconfined)
fi
echo "docker run ${run_options[*]} $image"

failed=0
for binary in $binaries; do
    log "in Docker: ${binary#"$repo"/}"
    docker run "${run_options[@]}" --entrypoint "$binary" "$image" "${skip_args[@]}" || failed=1
done

# --- The traps, diagnosed ----------------------------------------------------------------
# Started the wrong way, the daemon must fail the spawn and say what to change. (Unprivileged
# user namespaces switched off and AppArmor are unit-tested in src/zygote/diagnose.rs:
# switching them here would change the host.)
expect_hint() {
    local what=$1 want=$2; shift 2
    local out status=0
    out=$(docker run --rm --network none -v "$repo:$repo:ro" --entrypoint "$repo/target/debug/hatchery" \
        "$@" "$image" run --embedded -- /bin/true 2>&1) || status=$?
    if [ "$status" = 125 ] && grep -qF -- "$want" <<<"$out"; then
        echo "trap diagnosed: $what"
    else
        echo "trap NOT diagnosed: $what (exit $status, want 125 and \"$want\"):" >&2
        echo "$out" >&2
        failed=1
    fi
}
log "in Docker: the known traps are diagnosed"
expect_hint "Docker's default seccomp profile (clone3 ENOSYS)" "seccomp=docker/seccomp.json" \
    --security-opt systempaths=unconfined
expect_hint "masked /proc (mount too revealing)" "systempaths=unconfined" \
    --security-opt "seccomp=$repo/docker/seccomp.json"

# The non-root variant of docs/deploy.md: the daemon spawns as uid 1000 (its sandboxes map
# to that uid), and the unmasked /proc/sys is not writable to it.
log "in Docker: the daemon as a non-root user"
if out=$(docker run --rm --network none --user 1000:1000 \
        --security-opt "seccomp=$repo/docker/seccomp.json" --security-opt systempaths=unconfined \
        -v "$repo:$repo:ro" --entrypoint "$repo/target/debug/hatchery" "$image" \
        run --embedded --quiet -- /usr/bin/id -u 2>&1) && [ "$out" = 1000 ]; then
    echo "non-root daemon: spawns (the sandbox maps to uid 1000)"
else
    echo "non-root daemon failed: $out" >&2
    failed=1
fi
if docker run --rm --network none --user 1000:1000 --security-opt systempaths=unconfined \
        --entrypoint /bin/sh "$image" -c ': >> /proc/sys/kernel/core_pattern' 2>/dev/null; then
    echo "a non-root container could open core_pattern for writing" >&2
    failed=1
else
    echo "non-root container: the unmasked /proc/sys is not writable"
fi

[ "$failed" = 0 ] || die "tests failed inside Docker"
