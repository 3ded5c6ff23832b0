# The hub as a container: `hub run --config /app/config`.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY hub ./hub
RUN pip install --no-cache-dir .
COPY config ./config
RUN useradd --system hub
USER hub
EXPOSE 8080
CMD ["hub", "run", "--config", "/app/config"]
