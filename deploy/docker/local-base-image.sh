#!/usr/bin/env bash
# Builds a stand-in for python:3.11-slim without any container registry: Debian bookworm (Python 3.11)
# from the distribution mirror with debootstrap, trusting this host's CA certificates (package downloads
# may pass through a TLS-intercepting proxy), imported into the running Docker engine.
#   docker/local-base-image.sh [TAG]      (default local/python-base:3.11)
# Like python:3.11-slim it has no documentation (each package's copyright file stays), manual pages or
# translations, and no pip of its own (a virtual environment brings its own from the python3-venv wheels).
# The image is cached as a tarball named by this script's content hash, so later runs only `docker load` it
# and a changed recipe is built afresh.
set -euo pipefail
tag=${1:-local/python-base:3.11}
recipe=$(sha256sum "$0" | cut -c1-12)
cache=${BASE_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sentiment-service/python-base-3.11-$recipe.tar}

if docker image inspect "$tag" >/dev/null 2>&1; then
    exit 0
fi
if [ -s "$cache" ]; then
    docker load -q -i "$cache"
    exit 0
fi

mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
if [ -z "$mirror" ]; then
    mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list)
fi
rootfs=$(mktemp -d)
chmod 755 "$rootfs"  # mktemp makes it 0700, which would become the image root: unreadable for non-root users
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$mirror" >/dev/null
cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/" 2>/dev/null || true
chroot "$rootfs" update-ca-certificates >/dev/null
rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python3"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/debconf/*-old
find "$rootfs"/usr/share/doc -type f ! -name copyright -delete  # each package's licence stays
rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
    "$rootfs"/usr/share/lintian "$rootfs"/usr/share/bash-completion

tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    - "$tag" >/dev/null
mkdir -p "$(dirname "$cache")"
rm -f "$(dirname "$cache")"/python-base-3.11*.tar  # earlier recipes' images
docker save -o "$cache.tmp" "$tag"
mv "$cache.tmp" "$cache"
