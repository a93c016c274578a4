# Canopy controller image (docs/container.md). Two stages: the build stage installs the locked dependencies
# and Canopy into a venv; the final stage gets that venv without pip, setuptools or wheel, no tests, no build
# tools, runs as uid 10001 under tini (Debian's), which forwards signals to Canopy and reaps children.
#   buildah bud --isolation chroot --format docker -t canopy:0.1.0 .   (docker format keeps the HEALTHCHECK)
#   .ci/image-smoke                                                    (build, then run what the image runs)
#   podman run -d -p 6653:6653 -p 6640:6640 -p 8080:8080 -v canopy-data:/var/lib/canopy canopy:0.1.0
# The image listens on all addresses (config/container.yaml); every REST request, reads included, needs the
# token, generated on first start into the data volume (rest-token); or mount your own settings file with
# rest.token_file (and a tls section: docs/security.md) and pass "run --config /path/to/it".
# The controller's CPU share is the runtime's to give, not the image's: on a host shared with busy work,
# --cgroup-conf=cpu.weight=1000 (podman, cgroup v2) or --cpu-shares=10240 (cgroup v1; not on v2: runtimes convert
# shares to a weight differently) (docs/operations.md "Giving the controller a CPU when it needs one").
# BASE must be in local storage or pullable; both stages use it (the venv links to its Python).
ARG BASE=docker.io/library/python:3.11-slim-bookworm

FROM ${BASE} AS build
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Ryu 4.34 needs setuptools<58 and a PBR version to install (docs/ryu.md); then everything else exactly as
# requirements.lock pins it (ryu is already there), then Canopy without resolving anything again.
COPY requirements.lock ./
RUN python -m venv /opt/canopy/venv \
 && /opt/canopy/venv/bin/pip install "setuptools<58" wheel \
 && PBR_VERSION=4.34 /opt/canopy/venv/bin/pip install --no-build-isolation ryu==4.34 \
 && /opt/canopy/venv/bin/pip install -r requirements.lock
COPY pyproject.toml README.md ./
COPY controller ./controller
COPY bgp ./bgp
COPY ovsdb ./ovsdb
COPY openflow ./openflow
# Dependencies ship their own test suites (tinyrpc even as a top-level "tests" package; ryu/tests alone is
# ~5 MB): nothing imports them at run time, so every "tests" directory of the venv goes too.
RUN /opt/canopy/venv/bin/pip install --no-deps . \
 && /opt/canopy/venv/bin/pip uninstall -y setuptools wheel pip \
 && find /opt/canopy/venv/lib -type d -name tests -prune -exec rm -rf {} + \
 && /opt/canopy/venv/bin/python -m compileall -q /opt/canopy/venv/lib

FROM ${BASE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# The base image's own pip, setuptools and wheel go too: nothing in the final image installs packages.
RUN python -m pip uninstall -y pip setuptools wheel \
 && groupadd --system --gid 10001 canopy \
 && useradd --system --uid 10001 --gid canopy --home-dir /var/lib/canopy --shell /usr/sbin/nologin canopy \
 && mkdir -p /var/lib/canopy && chown 10001:10001 /var/lib/canopy && chmod 0750 /var/lib/canopy
COPY --from=build /usr/bin/tini-static /usr/bin/tini
COPY --from=build /opt/canopy/venv /opt/canopy/venv
COPY config/container.yaml /opt/canopy/config/container.yaml
COPY config/examples /opt/canopy/config/examples

USER 10001:10001
WORKDIR /var/lib/canopy
VOLUME ["/var/lib/canopy"]
EXPOSE 6653 6640 8080 6690 179
# canopy health asks GET /v1/status as "canopy status" would with the settings of the "run --config FILE" it runs
# (PID 1's command line): their REST address, https or http, and token; CANOPY_CA_FILE names the CA (docs/container.md).
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/opt/canopy/venv/bin/canopy", "health"]
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/canopy/venv/bin/canopy"]
CMD ["run", "--config", "/opt/canopy/config/container.yaml"]
