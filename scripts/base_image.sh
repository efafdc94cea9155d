#!/usr/bin/env bash
# Builds a Python 3.11 base image from Debian packages, for sites where the public parent
# images (zenmldocker/zenml, python:3.11-slim) cannot be pulled: debootstrap of Debian
# bookworm (its python3 is 3.11), a virtual environment on PATH at /opt/venv (python,
# pip), then `docker import`. Needs root, debootstrap and a running Docker engine.
#
#   scripts/base_image.sh [TAG]            # default TAG: xray-python:3.11-bookworm
#
# Settings (environment):
#   DEBIAN_MIRROR      Debian mirror (default http://deb.debian.org/debian)
#   XRAY_EXTRA_CA_CERTS  a PEM file of extra CA certificates to trust inside the image
#                      (a TLS-intercepting proxy, a private index); default: none. To trust
#                      what this machine trusts: XRAY_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
# The last line printed is the image tag.
set -euo pipefail

TAG="${1:-xray-python:3.11-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
EXTRA_CA="${XRAY_EXTRA_CA_CERTS:-}"

for tool in debootstrap docker; do
    command -v "$tool" >/dev/null || {
        echo "error: $tool is not installed (apt-get install debootstrap docker.io)" >&2
        exit 1
    }
done
docker info >/dev/null 2>&1 || {
    echo "error: no Docker engine answers (start dockerd, or check DOCKER_HOST)" >&2
    exit 1
}
if [[ -n "$EXTRA_CA" && ! -s "$EXTRA_CA" ]]; then
    echo "error: XRAY_EXTRA_CA_CERTS=$EXTRA_CA is not a readable, non-empty PEM file" >&2
    exit 1
fi

ROOT="$(mktemp -d /tmp/xray-rootfs.XXXXXX)"
cleanup() { rm -rf "$ROOT"; }
trap cleanup EXIT

echo "debootstrap bookworm from $MIRROR into $ROOT ..." >&2
debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,ca-certificates,passwd \
    bookworm "$ROOT" "$MIRROR" >&2

if [[ -n "$EXTRA_CA" ]]; then
    install -m 0644 "$EXTRA_CA" "$ROOT/usr/local/share/ca-certificates/xray-extra.crt"
    chroot "$ROOT" update-ca-certificates >&2
fi
chroot "$ROOT" python3 -m venv /opt/venv
chroot "$ROOT" /opt/venv/bin/python -m pip --version >&2
# Smaller image: no package lists or caches.
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/* "$ROOT"/root/.cache

tar -C "$ROOT" -c . | docker import \
    --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV VIRTUAL_ENV=/opt/venv' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PYTHONUNBUFFERED=1' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["python"]' \
    --message "Python 3.11 from Debian bookworm packages (scripts/base_image.sh)" \
    - "$TAG" >&2
docker run --rm "$TAG" python -c "import ssl, sys; print(sys.version.split()[0], ssl.OPENSSL_VERSION)" >&2
echo "$TAG"
