# syntax=docker/dockerfile:1
# One image for the qis processes. Which one a container runs is its command:
#   docker run IMAGE qis-command | qis-projector | qis-query | qis-feeds   (see docker-compose.yml)
# The default command, `qis up`, runs the three services in one container on the embedded SQLite
# stores (data in /var/lib/qis: mount a volume there to keep it), and qis-feeds beside them when
# /var/lib/qis/feeds.toml exists (or QIS_FEEDS_CONFIG names a file; docs/providers.md).

# --- build: a virtual environment with the project and its dependencies ---------------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/qis
WORKDIR /src
# Dependencies first, from the runtime lock alone (exact versions, hashes checked: the same set
# scripts/setup.sh installs), so that editing the code does not reinstall them.
COPY requirements/runtime.lock ./requirements/
RUN /opt/qis/bin/pip install --require-hashes -r requirements/runtime.lock
COPY pyproject.toml ./
# The code: the generated protobuf modules are committed under libs/contracts, so no protoc here.
COPY libs ./libs
COPY services ./services
COPY clients ./clients
# No dependencies (all in the lock) and no build isolation (setuptools is in the lock too).
RUN /opt/qis/bin/pip install --no-deps --no-build-isolation .

# --- runtime --------------------------------------------------------------------------------------
FROM python:3.11-slim
RUN groupadd --system --gid 10001 qis \
    && useradd --system --uid 10001 --gid qis --home-dir /var/lib/qis --shell /usr/sbin/nologin qis \
    && install -d -o qis -g qis -m 0750 /var/lib/qis
COPY --from=build /opt/qis /opt/qis
# Container defaults: listen on every interface (the processes' own defaults are 127.0.0.1, right
# for a laptop, unreachable from outside a container). Everything else is a QIS_* variable too.
ENV PATH=/opt/qis/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    QIS_DATA_DIR=/var/lib/qis \
    QIS_COMMAND_ADDRESS=0.0.0.0:50051 \
    QIS_QUERY_ADDRESS=0.0.0.0:50052 \
    QIS_PROJECTOR_ADDRESS=0.0.0.0:50053 \
    QIS_FLIGHT_ADDRESS=0.0.0.0:50054 \
    QIS_FEEDS_ADDRESS=0.0.0.0:50055
WORKDIR /var/lib/qis
USER qis:qis
# 50051 command, 50052 query, 50053 projector and 50055 feeds (health only), all serving
# grpc.health.v1; 50054 the query service's Arrow Flight endpoint.
EXPOSE 50051 50052 50053 50054 50055
# The processes stop gracefully on SIGTERM (health NOT_SERVING, then a QIS_SHUTDOWN_GRACE_S drain).
STOPSIGNAL SIGTERM
CMD ["qis", "up"]
