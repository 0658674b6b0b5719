# One image for every unbind process: the four services, the dashboard and the `unbind` command.
#
# The command chooses the process, the same way `unbind up` starts them (tools/stack.py):
#   uvicorn --factory services.<service>.main:create_app --host 0.0.0.0 --port <port>
#       service: binding 8001, verification 8002, risk 8003, notification 8004, dashboard 8005
#   unbind migrate     create (on a PostgreSQL server) and migrate each service's database
#   unbind seed        the demo customers, development only
# e.g. docker run --rm -p 8001:8001 unbind:dev uvicorn --factory services.binding.main:create_app --host 0.0.0.0 --port 8001
# Without a command it prints the `unbind` usage. Every setting comes from the environment
# (UNBIND_*, KAFKA_BOOTSTRAP_SERVERS; see .env.example): the image holds no secret and no config.
# Healthchecks live in docker-compose.yml and the Kubernetes probes (GET /readyz on the port).

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: the project's wheel and its runtime dependencies, in a venv copied whole below ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml ./
COPY shared ./shared
COPY services ./services
COPY tools ./tools
# A wheel, not the source tree: the image gets exactly what the package declares (the Alembic
# histories and the dashboard's static files included) and no test or bench extras.
RUN /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install /wheels/unbind-*.whl

# --- runtime ----------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
# The account report PDF embeds a CJK font from this package (services/binding/report.py).
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-wqy-microhei \
    && rm -rf /var/lib/apt/lists/*
# A numeric uid, so Kubernetes' runAsNonRoot can check it. /var/lib/unbind is the var dir: the
# development SMS, push, e-mail and webhook files (PostgreSQL holds the data).
RUN groupadd --system --gid 10001 unbind \
    && useradd --system --uid 10001 --gid unbind --home-dir /var/lib/unbind --shell /usr/sbin/nologin unbind \
    && install -d -o unbind -g unbind /var/lib/unbind
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UNBIND_VAR_DIR=/var/lib/unbind
WORKDIR /var/lib/unbind
USER 10001:10001
EXPOSE 8001 8002 8003 8004 8005
CMD ["unbind", "--help"]
