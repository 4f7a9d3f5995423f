FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . && useradd --system --uid 10001 relay
USER relay
EXPOSE 8000
CMD ["clockify-relay", "serve", "--host", "0.0.0.0", "--port", "8000"]
