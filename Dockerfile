# ml-connector: one image for the operator and the worker (`ml-connector operator` / `ml-connector worker`).
# BASE_IMAGE must provide python3 (3.11+) with the venv module; the same base is used in both stages so
# the virtualenv's interpreter link stays valid.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
# Package-index settings for this stage only (a mirror, an extra index, a CA bundle); unset by default, and they
# never reach the final stage. scripts/image.sh passes the host pip's own settings here.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ARG PIP_CERT
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN python3 -m venv /opt/ml-connector \
 && /opt/ml-connector/bin/pip install --no-compile '.[postgres]' \
 && { /opt/ml-connector/bin/pip uninstall -y -q wheel setuptools pip 2>/dev/null || true; } \
 && find /opt/ml-connector -name '__pycache__' -prune -exec rm -rf {} + \
 && rm -rf /root/.cache

FROM ${BASE_IMAGE}
# No installer in the final stage: remove the base's own pip, setuptools and wheel when it has them
# (python:3.11-slim does; a Debian python3 base does not).
RUN if PYTHONDONTWRITEBYTECODE=1 python3 -m pip --version >/dev/null 2>&1; then \
      PYTHONDONTWRITEBYTECODE=1 python3 -m pip uninstall -y -q wheel setuptools pip; \
    fi \
 && rm -rf /root/.cache
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="ml-connector" \
      org.opencontainers.image.description="Kubernetes operator feeding Anaplan models with Infor CloudSuite actuals" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/ml-connector/ml-connector"
COPY --from=build /opt/ml-connector /opt/ml-connector
ENV PATH=/opt/ml-connector/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/tmp
# A numeric non-root user, so Kubernetes can verify runAsNonRoot; the root filesystem can be read-only
# (the only writable path the program needs is /tmp, mounted as an emptyDir by the chart and the Jobs).
USER 65532:65532
WORKDIR /tmp
ENTRYPOINT ["ml-connector"]
CMD ["operator"]
