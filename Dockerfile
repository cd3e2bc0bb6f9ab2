FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md LICENSE requirements.lock ./
COPY config ./config
COPY worker ./worker
COPY tasks ./tasks
COPY boxsim ./boxsim
# The runtime dependencies at the exact versions of the lock, then boxcut itself.
RUN pip install --no-cache-dir -r requirements.lock && pip install --no-cache-dir --no-deps . \
    && useradd --system boxcut
USER boxcut
CMD ["boxcut", "worker"]
