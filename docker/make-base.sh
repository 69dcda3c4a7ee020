#!/usr/bin/env bash
# Makes the base image docker/Dockerfile builds on, without a registry: a Debian bookworm
# minbase root made by debootstrap from the machine's own apt mirror, imported with
# `docker import`. Run as root on a Debian host with a Docker engine. About 30 s.
#
#   docker/make-base.sh                      # makes hatchery-base:bookworm
#   docker/make-base.sh TAG [PACKAGE,...]    # another tag, with extra packages
#
# The rootfs tarball is cached in $HATCHERY_DOCKER_CACHE (default
# /var/cache/hatchery-docker), one per package list, so a second run only imports it.
set -euo pipefail
tag=${1:-hatchery-base:bookworm}
include=${2:-}
cache=${HATCHERY_DOCKER_CACHE:-/var/cache/hatchery-docker}

die() { echo "docker/make-base.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (debootstrap makes device nodes and owners)"
command -v debootstrap >/dev/null || die "no debootstrap (apt-get install debootstrap)"
docker info >/dev/null 2>&1 || die "no Docker engine answers (start dockerd first)"

tarball="$cache/bookworm-minbase${include:+-${include//,/-}}.tar"
if [ ! -s "$tarball" ]; then
    # The first Debian mirror the machine's apt sources name (deb822 or one-line).
    mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n 1 || true)
    [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list 2>/dev/null || true)
    [ -n "$mirror" ] || die "no Debian mirror found in the apt sources"
    echo "debootstrap --variant=minbase ${include:+--include=$include }bookworm (mirror $mirror)"
    mkdir -p "$cache"
    rootfs=$(mktemp -d "$cache/rootfs.XXXXXX")
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase ${include:+--include="$include"} bookworm "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 \
        || { tail -n 20 "$cache/debootstrap.log" >&2; die "debootstrap failed (log: $cache/debootstrap.log)"; }
    tar -C "$rootfs" -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
fi
echo "docker import $tarball as $tag"
docker import "$tarball" "$tag" >/dev/null
