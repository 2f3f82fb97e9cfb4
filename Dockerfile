# One image for every role: the API (`coalition serve`), the worker (`coalition worker`) and the
# one-shot migration (`coalition migrate`). Settings come from COALITION_* variables.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY coalition ./coalition
COPY partners ./partners
COPY settlement ./settlement
RUN pip install --no-cache-dir . && useradd --create-home coalition && mkdir /keys && chown coalition /keys
USER coalition
EXPOSE 8000
CMD ["coalition", "serve", "--host", "0.0.0.0", "--port", "8000"]
