#!/usr/bin/env bash
# Builds a stand-in for python:3.11-slim without any container registry: Debian bookworm (Python 3.11)
# from the distribution mirror with debootstrap, trusting this host's CA certificates (package downloads
# may pass through a TLS-intercepting proxy), imported into the running Docker engine.
#   docker/local-base-image.sh [TAG]      (default local/python-base:3.11)
# The image is cached as a tarball (BASE_IMAGE_CACHE) so later runs only `docker load` it.
set -euo pipefail
tag=${1:-local/python-base:3.11}
cache=${BASE_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sentiment-service/python-base-3.11.tar}

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
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$rootfs" "$mirror" >/dev/null
cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/" 2>/dev/null || true
chroot "$rootfs" update-ca-certificates >/dev/null
rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python"
ln -sf /usr/bin/python3 "$rootfs/usr/local/bin/python3"
ln -sf /usr/bin/pip3 "$rootfs/usr/local/bin/pip"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    - "$tag" >/dev/null
mkdir -p "$(dirname "$cache")"
docker save -o "$cache.tmp" "$tag"
mv "$cache.tmp" "$cache"
