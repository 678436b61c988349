# privaflow's one image: the edge agent, the stream workers and the API (k8s/ runs each with its
# own command). Built in two stages so the final image holds the virtualenv and nothing that
# compiled it.
#
#   docker build -t ghcr.io/privaflow/privaflow:0.1.0 .

# ---- builder: build the wheel, install it with its dependencies into /opt/venv
FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY . .
# the rocksdb extra: the stream workers keep their tables in RocksDB on a volume
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --upgrade pip build \
 && /opt/venv/bin/python -m build --wheel --outdir /wheels . \
 && /opt/venv/bin/pip uninstall --yes build \
 && /opt/venv/bin/pip install "$(ls /wheels/privaflow-*.whl)[rocksdb]"

# ---- final: the runtime only
FROM python:3.11-slim

# libGL and GLib are what OpenCV's wheel loads at import; no compiler comes with them
RUN apt-get update \
 && apt-get install --yes --no-install-recommends libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 privaflow \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin privaflow

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd
USER 10001:10001
WORKDIR /var/lib/privaflow
ENTRYPOINT ["privaflow"]
CMD ["--help"]
