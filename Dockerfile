FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY config ./config
COPY worker ./worker
COPY tasks ./tasks
COPY boxsim ./boxsim
RUN pip install --no-cache-dir . && useradd --system boxcut
USER boxcut
CMD ["boxcut", "worker"]
