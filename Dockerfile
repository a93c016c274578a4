# Canopy controller image.
#   buildah bud --isolation chroot --format docker -t canopy:0.1.0 .   (docker format keeps the HEALTHCHECK)
#   podman run -d -p 6653:6653 -p 6640:6640 -p 8080:8080 -v canopy-data:/var/lib/canopy canopy:0.1.0
# The image listens on all addresses (config/container.yaml); every REST request, reads included, needs the
# token, generated on first start into the data volume (rest-token); or mount your own settings file with
# rest.token_file (and a tls section: docs/security.md) and pass "run --config /path/to/it".
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/canopy
COPY pyproject.toml README.md ./
COPY controller ./controller
COPY bgp ./bgp
COPY ovsdb ./ovsdb
COPY openflow ./openflow
COPY config ./config

# Ryu 4.34 needs setuptools<58 and a PBR version to install (docs/ryu.md).
RUN python -m venv /opt/canopy/venv \
 && /opt/canopy/venv/bin/pip install "setuptools<58" wheel \
 && PBR_VERSION=4.34 /opt/canopy/venv/bin/pip install --no-build-isolation ryu==4.34 \
 && /opt/canopy/venv/bin/pip install . \
 && rm -rf build *.egg-info \
 && groupadd --system --gid 10001 canopy \
 && useradd --system --uid 10001 --gid canopy --home-dir /var/lib/canopy --shell /usr/sbin/nologin canopy \
 && mkdir -p /var/lib/canopy && chown canopy:canopy /var/lib/canopy

USER canopy
VOLUME ["/var/lib/canopy"]
EXPOSE 6653 6640 8080 6690 179
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["/opt/canopy/venv/bin/python", "-c", "import sys, urllib.request as u; t = open('/var/lib/canopy/rest-token').read().strip(); sys.exit(0 if u.urlopen(u.Request('http://127.0.0.1:8080/v1/status', headers={'Authorization': 'Bearer ' + t}), timeout=2).status == 200 else 1)"]
ENTRYPOINT ["/opt/canopy/venv/bin/canopy"]
CMD ["run", "--config", "/opt/canopy/config/container.yaml"]
