# boxcut's image: built in one stage, run in another, as a user without privileges.
# Build: `docker compose build` (or `docker build .`; `--build-arg EXTRAS=flower` adds Flower).
FROM python:3.11.11-slim-bookworm AS build
ARG EXTRAS=""
WORKDIR /src
RUN python -m venv /opt/boxcut
ENV PATH=/opt/boxcut/bin:$PATH
# The runtime dependencies at the exact versions of the lock, then boxcut itself (and any extras) without
# letting pip choose other versions.
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock
COPY pyproject.toml README.md LICENSE CHANGELOG.md ./
COPY config ./config
COPY worker ./worker
COPY tasks ./tasks
COPY boxsim ./boxsim
RUN pip install --no-cache-dir --no-deps . \
    && if [ -n "$EXTRAS" ]; then pip install --no-cache-dir -c requirements.lock ".[$EXTRAS]"; fi

FROM python:3.11.11-slim-bookworm
COPY --from=build /opt/boxcut /opt/boxcut
ENV PATH=/opt/boxcut/bin:$PATH PYTHONUNBUFFERED=1
RUN useradd --system --home-dir /home/boxcut --create-home boxcut
USER boxcut
WORKDIR /home/boxcut
# 8000: the intake (boxcut intake); 9808: a worker's metrics (boxcut worker --metrics-port).
EXPOSE 8000 9808
# Every service's first need: Redis answers with boxcut's settings. Compose gives each service a check of its own
# (the intake's /readyz, a worker's ping of itself).
HEALTHCHECK --interval=30s --timeout=10s --retries=3 CMD ["python", "-c", \
  "from config import load_settings; from worker.connections import redis_client; redis_client(load_settings()).ping()"]
CMD ["boxcut", "worker"]
