# corehub: one image for every service of docker-compose.yml (Airflow's api-server, scheduler,
# dag-processor, triggerer, Celery workers, the init job and the lookup API).
#
# The Python dependencies are the project's pins, installed at build time: requirements.txt names
# what we use, constraints.txt pins every version (the same files `make venv` uses). Nothing is
# installed when a container starts (no _PIP_ADDITIONAL_REQUIREMENTS).
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AIRFLOW_HOME=/opt/airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/corehub/dags \
    COREHUB_HOME=/data/corehub \
    HOME=/home/corehub

# curl for the health checks; tini as PID 1 (passes SIGTERM on, so Celery workers shut down warm)
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl tini \
    && rm -rf /var/lib/apt/lists/*

# the user every service runs as (uid 50000, group 0, like Airflow's own image)
# (another AIRFLOW_UID works too: everything it writes is group 0 and group-writable)
RUN useradd --uid 50000 --gid 0 --home-dir /home/corehub --create-home --shell /bin/bash corehub \
    && chmod g+rwX /home/corehub

WORKDIR /opt/corehub

# dependencies first (a layer that changes only with the pins)
COPY requirements.txt constraints.txt ./
RUN pip install "pip==26.3" \
    && pip install -r requirements.txt -c constraints.txt

# the project itself: code, DAGs, feed contracts, migrations, GX suites
COPY pyproject.toml ./
COPY pipelines ./pipelines
COPY dags ./dags
COPY schemas ./schemas
COPY sql ./sql
COPY expectations ./expectations
# editable: pipelines.config finds schemas/, sql/ and expectations/ next to the package
RUN pip install --no-deps -e . \
    && mkdir -p /opt/airflow/logs /opt/airflow/config \
                /data/corehub/inbox /data/corehub/archive /data/corehub/reports \
    && chown -R 50000:0 /opt/airflow /data/corehub /opt/corehub \
    && chmod -R g+rwX /opt/airflow /data/corehub

USER 50000
EXPOSE 8080 8000
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["airflow", "version"]
