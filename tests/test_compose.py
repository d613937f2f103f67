"""docker-compose.yml and the Dockerfile, checked without a Docker engine (none runs on our machines).

The file parses; conforms to the Compose Specification's JSON schema (tests/data/, see its
README); every service, volume, build context, Dockerfile and copied path it names exists; every
${VARIABLE} has a default; and the settings agree with what the code reads: Airflow's options
(AIRFLOW__SECTION__KEY) exist in this Airflow, the COREHUB_*/WAREHOUSE_URL variables are read by
pipelines/, the connection URLs name the services that serve them with their credentials, and the
inbox/archive/report volumes are mounted where pipelines.config looks for them.
"""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from pipelines.config import PROJECT_ROOT, Settings

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
SCHEMA = PROJECT_ROOT / "tests" / "data" / "compose-spec.schema.json"
AIRFLOW_SERVICES = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker",
                    "airflow-triggerer", "airflow-init")
VARIABLE = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value, env: dict | None = None):
    """Compose's variable interpolation (${X}, ${X:-default}, ${X-default}, ${X:?error}, $$) over a
    parsed file, with the given environment (default: none set, so the defaults apply)."""
    env = env or {}
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m):
        if m.group(0) == "$$":
            return "$"
        name = m.group("name") or m.group("bare")
        op, arg = m.group("op"), m.group("arg")
        current = env.get(name)
        if op in (":-", "-"):
            return current if (current if op == ":-" else current is not None) else arg
        if op in (":?", "?"):
            if not current:
                raise KeyError(f"{name} must be set: {arg}")
            return current
        return current or ""

    return VARIABLE.sub(sub, value)


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text())  # anchors and << merges resolved, as Compose does


@pytest.fixture(scope="module")
def compose(raw) -> dict:
    return interpolate(raw)


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of every Dockerfile line, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def command_of(service: dict) -> list[str]:
    cmd = service.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


# ----------------------------------------------------------------------------- the file itself

def test_the_schema_copy_is_the_reference_with_its_licence_line():
    schema = json.loads(SCHEMA.read_text())
    assert schema["title"] == "Compose Specification"
    readme = (SCHEMA.parent / "README.md").read_text()
    assert "compose-spec.schema.json" in readme and "Apache License 2.0" in readme


def test_compose_file_conforms_to_the_compose_specification(raw):
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(raw), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)
    # and after interpolation (what the engine validates)
    errors = list(validator.iter_errors(interpolate(raw)))
    assert not errors, errors[0].message


def test_the_schema_check_has_teeth():
    import jsonschema

    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    assert list(validator.iter_errors({"services": {"x": {"image": "a", "restart_policy": "always"}}}))
    assert list(validator.iter_errors({"services": {"x": {"image": "a", "volumes": "not-a-list"}}}))
    assert list(validator.iter_errors({"services": {"x": {"image": "a"}}, "volume": {}}))


def test_every_variable_has_a_default_so_up_works_without_an_env_file(raw):
    found = set()

    def walk(value):
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str):
            for m in VARIABLE.finditer(value):
                if m.group(0) == "$$":
                    continue
                name = m.group("name") or m.group("bare")
                found.add(name)
                assert m.group("op") in (":-", "-"), f"${{{name}}} has no default in {value!r}"

    walk(raw)
    documented = COMPOSE.read_text().split("---", 1)[0]  # the header comment lists the settings
    assert found, "no variables at all?"
    for name in found:
        assert name in documented, f"{name} is not described in docker-compose.yml's header"
    interpolate(raw, env={})  # no ${X:?}: nothing is required


def test_the_stack_has_the_services_of_airflows_compose_file_plus_ours(compose):
    services = compose["services"]
    assert set(AIRFLOW_SERVICES) | {"airflow-postgres", "warehouse", "redis", "corehub-api"} <= set(services)
    assert services["warehouse"]["image"].startswith("postgis/postgis:")
    assert services["airflow-postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    for name, service in services.items():
        for dep in service.get("depends_on") or {}:
            assert dep in services, f"{name} depends on unknown service {dep}"
        for mount in service.get("volumes") or []:
            source = mount.split(":")[0] if isinstance(mount, str) else mount.get("source")
            if source.startswith((".", "/")):
                assert (PROJECT_ROOT / source).exists(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in (compose.get("volumes") or {}), f"{name}: volume {source} is not declared"
    init_deps = {name for name, s in services.items() if "airflow-init" in (s.get("depends_on") or {})}
    assert init_deps >= set(AIRFLOW_SERVICES) - {"airflow-init"} | {"corehub-api"}
    for name in init_deps:
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"


def test_every_build_uses_this_dockerfile_and_no_runtime_pip(compose, raw):
    text = COMPOSE.read_text()
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in text and "pip install" not in text
    images = set()
    for name, service in compose["services"].items():
        build = service.get("build")
        if build is None:
            continue
        context = PROJECT_ROOT / (build if isinstance(build, str) else build.get("context", "."))
        dockerfile = context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
        assert context.is_dir() and dockerfile.resolve() == DOCKERFILE.resolve(), name
        images.add(service.get("image"))
    assert len(images) == 1, f"one image for every service we build, not {images}"
    for name in (*AIRFLOW_SERVICES, "corehub-api"):
        assert compose["services"][name].get("build"), f"{name} runs our image"


def test_the_dockerfile_installs_the_pins_and_copies_what_exists(dockerfile):
    runs = " ".join(args for instruction, args in dockerfile if instruction == "RUN")
    assert "-r requirements.txt -c constraints.txt" in runs
    assert "pip install --no-deps -e ." in runs  # pipelines.config finds schemas/, sql/ next to the code
    ignored = [line.strip() for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    copied = []
    for instruction, args in dockerfile:
        if instruction in ("COPY", "ADD"):
            *sources, _dest = args.split()
            for source in sources:
                assert not source.startswith("--"), "no COPY --from/--chown needed"
                assert (PROJECT_ROOT / source).exists(), f"COPY {source}: no such file"
                assert source.rstrip("/") not in ignored, f"COPY {source}: excluded by .dockerignore"
                copied.append(source.rstrip("/"))
    for needed in ("requirements.txt", "constraints.txt", "pyproject.toml", "pipelines", "dags", "schemas", "sql",
                   "expectations"):
        assert needed in copied, f"the image lacks {needed}"
    workdir = [args for instruction, args in dockerfile if instruction == "WORKDIR"][-1]
    env = " ".join(args for instruction, args in dockerfile if instruction == "ENV")
    assert f"AIRFLOW__CORE__DAGS_FOLDER={workdir}/dags" in env
    assert "COREHUB_HOME=/data/corehub" in env
    base = [args for instruction, args in dockerfile if instruction == "FROM"][0]
    assert base.startswith("python:3.11"), "the pins are for Python 3.11"
    assert (PROJECT_ROOT / "dags" / "corehub_dags.py").is_file()


# ----------------------------------------------------------------------------- settings vs code

def _code_reads() -> set[str]:
    """Environment variables read anywhere in pipelines/ (os.environ / os.getenv with a literal)."""
    names = set()
    for path in (PROJECT_ROOT / "pipelines").glob("*.py"):
        text = path.read_text()
        names |= set(re.findall(r"""environ(?:\.get)?\s*[\[(]\s*["']([A-Z_][A-Z0-9_]*)["']""", text))
        names |= set(re.findall(r"""getenv\(\s*["']([A-Z_][A-Z0-9_]*)["']""", text))
        # constants that name a variable: WEBHOOK_ENV = "COREHUB_NOTIFY_WEBHOOK", read via environ.get(WEBHOOK_ENV)
        names |= set(re.findall(r"""^[A-Z_]+_ENV\s*=\s*["']([A-Z_][A-Z0-9_]*)["']""", text, re.M))
    return names


def test_corehub_settings_are_ones_the_code_reads(compose):
    reads = _code_reads()
    assert {"COREHUB_HOME", "WAREHOUSE_URL", "COREHUB_NOTIFY_WEBHOOK", "COREHUB_NOTIFY_SMTP",
            "COREHUB_LINEAGE"} <= reads, reads
    for name, service in compose["services"].items():
        for key in env_of(service):
            if key.startswith("COREHUB_") or key == "WAREHOUSE_URL":
                assert key in reads, f"{name} sets {key}, which no code reads"
    for name in ("airflow-worker", "corehub-api", "airflow-init"):
        env = env_of(compose["services"][name])
        assert env.get("COREHUB_HOME") and env.get("WAREHOUSE_URL"), f"{name} needs the warehouse and the folders"


def test_airflow_settings_exist_in_this_airflow(compose):
    keys = sorted({key for s in compose["services"].values() for key in env_of(s) if key.startswith("AIRFLOW__")})
    assert keys
    pairs = [key[len("AIRFLOW__"):].lower().split("__", 1) for key in keys]
    # in a child process: importing airflow here would fix its configuration for the whole session
    code = ("import json, sys\nfrom airflow.configuration import conf\nd = conf.configuration_description\n"
            "print(json.dumps([s in d and k in d[s]['options'] for s, k in json.load(sys.stdin)]))")
    env = {"AIRFLOW_HOME": str(PROJECT_ROOT / ".pytest_cache" / "compose-airflow-home"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], input=json.dumps(pairs), capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    known = json.loads(proc.stdout.strip().splitlines()[-1])
    unknown = [key for key, ok in zip(keys, known) if not ok]
    assert not unknown, f"not options of this Airflow: {unknown}"


def test_airflow_runs_on_celery_with_the_services_of_this_file(compose):
    services = compose["services"]
    common = env_of(services["airflow-scheduler"])
    for name in AIRFLOW_SERVICES:
        env = env_of(services[name])
        for key in ("AIRFLOW__CORE__EXECUTOR", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__BROKER_URL",
                    "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
                    "AIRFLOW__CORE__DAGS_FOLDER", "WAREHOUSE_URL"):
            assert env.get(key) == common.get(key), f"{name}: {key} differs (every part needs the same)"
    assert common["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert len(common["AIRFLOW__API_AUTH__JWT_SECRET"]) >= 64  # HS512 wants 64 bytes

    pg = env_of(services["airflow-postgres"])
    for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND"):
        url = urlsplit(common[key].removeprefix("db+"))
        assert url.scheme == "postgresql+psycopg2"
        assert (url.hostname, url.port or 5432, url.path.lstrip("/")) == ("airflow-postgres", 5432, pg["POSTGRES_DB"])
        assert (url.username, url.password) == (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"])
    broker = urlsplit(common["AIRFLOW__CELERY__BROKER_URL"])
    assert (broker.scheme, broker.hostname, broker.port) == ("redis", "redis", 6379)
    api = urlsplit(common["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert api.hostname == "airflow-apiserver" and api.path == "/execution/"
    assert any(str(p).split(":")[-1] == str(api.port) for p in services["airflow-apiserver"]["ports"])
    assert command_of(services["airflow-apiserver"]) == ["airflow", "api-server"]
    assert command_of(services["airflow-scheduler"]) == ["airflow", "scheduler"]
    assert command_of(services["airflow-dag-processor"]) == ["airflow", "dag-processor"]
    assert command_of(services["airflow-triggerer"]) == ["airflow", "triggerer"]
    assert command_of(services["airflow-worker"]) == ["airflow", "celery", "worker"]


def test_workers_scale(compose):
    worker = compose["services"]["airflow-worker"]
    assert "container_name" not in worker, "a fixed container name prevents --scale"
    assert not worker.get("ports"), "published ports prevent --scale"
    assert "deploy" not in worker or "replicas" not in worker["deploy"]


def test_the_warehouse_url_names_the_warehouse_service(compose):
    services = compose["services"]
    wh = env_of(services["warehouse"])
    for name in ("airflow-worker", "corehub-api", "airflow-init"):
        url = urlsplit(env_of(services[name])["WAREHOUSE_URL"])
        assert url.scheme == "postgresql" and (url.hostname, url.port) == ("warehouse", 5432)
        assert (url.username, url.password, url.path.lstrip("/")) == (wh["POSTGRES_USER"], wh["POSTGRES_PASSWORD"],
                                                                       wh["POSTGRES_DB"])


def test_inbox_archive_and_reports_are_volumes_where_the_code_looks(compose):
    services = compose["services"]
    worker = services["airflow-worker"]
    home = Path(env_of(worker)["COREHUB_HOME"])
    s = Settings(home=home, warehouse_url=None)
    mounts = {m.split(":")[1]: m.split(":")[0] for m in worker["volumes"]}
    for folder, volume in ((s.inbox, "corehub-inbox"), (s.archive, "corehub-archive"), (s.reports, "corehub-reports")):
        assert mounts.get(str(folder)) == volume, f"the worker must mount {volume} at {folder}"
        init_mounts = {m.split(":")[1]: m.split(":")[0] for m in services["airflow-init"]["volumes"]}
        assert init_mounts.get(str(folder)) == volume
    api_mounts = {m.split(":")[1]: m.split(":")[0] for m in services["corehub-api"]["volumes"]}
    assert api_mounts.get(str(s.reports)) == "corehub-reports"
    lineage = env_of(worker)["COREHUB_LINEAGE"]
    assert lineage.startswith(f"file:{s.reports}/"), "the default lineage file lives on a volume"


def test_init_migrates_airflow_and_the_warehouse_with_real_commands(compose):
    init = compose["services"]["airflow-init"]
    script = " ".join(command_of(init))
    assert "airflow db migrate" in script
    assert "corehub url" in script  # applies the warehouse's sql/ migrations and reference data
    assert "python -m pipelines.ops inboxes" in script
    from pipelines import ops

    assert callable(ops.ensure_inboxes)
    assert init.get("restart") in ("no", None)


def _corehub_subcommands() -> set[str]:
    proc = subprocess.run([str(Path(sys.executable).with_name("corehub")), "--help"], capture_output=True,
                          text=True, timeout=120)
    match = re.search(r"\{([a-z,\-]+)\}", proc.stdout)
    return set(match.group(1).split(",")) if match else set()


def test_the_lookup_api_service_runs_corehub_serve(compose):
    api = compose["services"]["corehub-api"]
    cmd = command_of(api)
    assert cmd[:2] == ["corehub", "serve"] and cmd[cmd.index("--host") + 1] == "0.0.0.0"
    port = cmd[cmd.index("--port") + 1]
    assert any(str(p).endswith(f":{port}") for p in api["ports"])
    commands = _corehub_subcommands()
    assert {"ingest", "url", "status"} <= commands, commands
    if "serve" not in commands:
        pytest.skip("`corehub serve` is not in the CLI yet (being added with the lookup API)")
