"""The compose services' own commands work: run natively, outside Docker, exactly as
docker-compose.yml starts them, with the environment their containers get (image ENV +
`.env` + `environment`), and the test's database and broker in place of the compose ones.

What differs from a container is translated by `tests.deploy.NativeLayout` and listed there;
the `.env` is .env.example with the edits the README asks of an operator.

With TEST_DATABASE_URL set the services use a scratch database next to it (`<name>_parity`,
dropped afterwards); otherwise a SQLite file. With TEST_REDIS_URL set they use that Redis
database as broker; otherwise the embedded filesystem broker in a temporary folder.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests import deploy, support
from tests.deploy import ComposeProject, NativeLayout, NativeStack

pytestmark = pytest.mark.worker

API_PORT = 8000  # the api's port inside its container
SIMULATOR_PORT = 8001  # the simulator's (offline profile)
PASSWORD = "a long parity passphrase"


@pytest.fixture(autouse=True)
def _isolated() -> None:
    """Replaces the integration suite's shared-database cleanup: this test brings its own
    database, broker folder and media folder, and removes them itself."""


@pytest.fixture
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="compose-parity-") as folder:
        yield Path(folder)


@pytest.fixture
def parity_database(database_url: str, workdir: Path) -> Iterator[str]:
    """A database of its own, next to the suite's (MariaDB) or a SQLite file."""
    parsed = make_url(database_url)
    if parsed.get_backend_name() == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir / 'parity.db'}"
        return
    url = parsed.set(database=f"{parsed.database}_parity").render_as_string(hide_password=False)
    support.recreate_database(url)
    try:
        yield url
    finally:
        support.drop_database(url)


@pytest.fixture
def parity_redis(redis_url: str) -> Iterator[str]:
    """The suite's Redis database, if any; the keys the services add are removed afterwards
    (queue bindings stay: the suite's own publishers rely on them)."""
    if not redis_url:
        yield ""
        return
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    before = set(client.keys("*"))
    try:
        yield redis_url
    finally:
        added = [k for k in set(client.keys("*")) - before if not k.startswith("_kombu.binding")]
        if added:
            client.delete(*added)
        client.close()


@pytest.fixture
def project(workdir: Path, parity_database: str, parity_redis: str) -> ComposeProject:
    api_port = support.free_port()
    simulator_port = support.free_port()
    for sub in ("media", "tmp", "broker", "logs"):
        (workdir / sub).mkdir()
    dotenv = deploy.read_env_file(deploy.ENV_EXAMPLE)
    # The operator's edits (README): a real secret, and this service's public address.
    dotenv |= {
        "SECRET_KEY": support.TEST_SECRET_KEY,
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{api_port}",
        # The offline profile, as the README says: the gateway simulator by service name.
        "AAMARPAY_BASE_URL": f"http://simulator:{SIMULATOR_PORT}",
        # ... which knows only the public sandbox store: a staging deployment.
        "AAMARPAY_ALLOW_SANDBOX": "true",
        "LOG_LEVEL": "INFO",
        # So that beat has something to send within the test.
        "RECONCILE_INTERVAL_SECONDS": "1",
    }
    compose = deploy.load_compose(dotenv)
    layout = NativeLayout(
        paths={
            "/app": deploy.PROJECT_DIR,
            "/data/media": workdir / "media",
            "/tmp": workdir / "tmp",
            "/opt/venv": Path(sys.prefix),
        },
        ports={API_PORT: api_port, SIMULATOR_PORT: simulator_port},
        hosts=frozenset(compose["services"]),
    )
    # The test's services in place of the compose ones.
    overrides = {
        "DATABASE_URL": parity_database,
        "CELERY_BROKER_URL": parity_redis,
        "REDIS_URL": parity_redis,
        "EMBEDDED_BROKER_DIR": str(workdir / "broker"),
    }
    return ComposeProject(dotenv=dotenv, layout=layout, overrides=overrides)


def project_files() -> set[str]:
    return {p.name for p in deploy.PROJECT_DIR.iterdir()}


def test_compose_services_run_natively(project: ComposeProject, workdir: Path) -> None:
    files_before = project_files()
    api_url = f"http://127.0.0.1:{project.layout.ports[API_PORT]}"

    # The commands are the compose file's, translated only as NativeLayout says.
    compose = project.compose()
    for name in ("migrate", "api", "worker", "beat"):
        native = project.native(name)
        expected = project.layout.local_argv(deploy.service_command(compose["services"][name]))
        assert native.argv[1:] == expected[1:]
        assert Path(native.argv[0]).name == expected[0]
        assert native.cwd == deploy.PROJECT_DIR
        assert native.env["ENVIRONMENT"] == "production"
        assert native.env["MEDIA_ROOT"] == str(workdir / "media")

    # 1. `cp .env.example .env` alone: no secret, so nothing starts, loudly.
    unset = deploy.read_env_file(deploy.ENV_EXAMPLE)["SECRET_KEY"]
    refused = dataclasses.replace(project, dotenv={**project.dotenv, "SECRET_KEY": unset})
    (workdir / "logs" / "refused").mkdir()
    with NativeStack(refused, workdir / "logs" / "refused") as refused_stack:
        code, output = refused_stack.run_once("migrate", timeout=120)
    assert code != 0
    assert "SECRET_KEY is not set" in output, output

    with NativeStack(project, workdir / "logs") as stack:
        # 2. With a real secret: migrate runs to completion ...
        code, output = stack.run_once("migrate", timeout=180)
        assert code == 0, output

        # ... then the api answers /readyz (database and broker reachable) ...
        api = stack.start("api")
        deploy.wait_for(
            lambda: deploy.http_status(f"{api_url}/readyz") == 200,
            timeout=60,
            what="the api's /readyz",
            alive=[api],
        )
        health = stack.healthcheck("api")
        assert health.returncode == 0, health.stderr

        # ... the worker answers its compose healthcheck (a Celery ping to celery@$HOSTNAME) ...
        worker = stack.start("worker")
        deploy.wait_for(
            lambda: " ready." in worker.log(), timeout=60, what="the worker", alive=[worker]
        )
        deploy.wait_for(
            lambda: stack.healthcheck("worker").returncode == 0,
            timeout=60,
            what="the worker to answer `celery inspect ping`",
            alive=[worker],
        )

        # ... and beat's periodic job reaches the worker, which runs it.
        beat = stack.start("beat")
        deploy.wait_for(
            lambda: re.search(r"Task payments\.reconcile\[[^]]+\] succeeded", worker.log()),
            timeout=60,
            what="the reconcile job sent by beat to be run by the worker",
            alive=[worker, beat],
        )
        assert list((workdir / "tmp").glob("celerybeat-schedule*")), "beat's schedule file"

        # 3. A person registers and signs in through the api.
        with httpx.Client(base_url=api_url, timeout=10) as client:
            registered = client.post(
                "/api/auth/register/", json={"username": "parity", "password": PASSWORD}
            )
            assert registered.status_code == 201, registered.text
            token = client.post(
                "/api/auth/token/", data={"username": "parity", "password": PASSWORD}
            )
            assert token.status_code == 200, token.text
            headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
            me = client.get("/api/auth/me/", headers=headers)
            assert me.status_code == 200, me.text
            assert me.json()["username"] == "parity"
            assert me.json()["can_upload"] is False

        # 4. ... pays through the gateway simulator (the offline profile's service) ...
        simulator = stack.start("simulator")
        sim_url = f"http://127.0.0.1:{project.layout.ports[SIMULATOR_PORT]}"
        deploy.wait_for(
            lambda: deploy.http_status(f"{sim_url}/_sim/config") == 200,
            timeout=60,
            what="the simulator",
            alive=[simulator],
        )
        with httpx.Client(base_url=api_url, timeout=30) as client:
            started = client.post("/api/initiate-payment/", headers=headers)
            assert started.status_code == 201, started.text
            assert started.json()["payment_url"].startswith("http://localhost:")
            tran_id = started.json()["transaction_id"]
            paid = httpx.post(
                f"{sim_url}/_sim/pay/{tran_id}", json={"outcome": "success", "method": "bkash"}
            ).json()
            confirmed = client.post("/api/payment/success/", data=paid["fields"])
            assert confirmed.status_code == 200, confirmed.text
            assert confirmed.json()["status"] == "success"

            # ... uploads a file, which the worker counts from the shared media volume.
            text = "Parity: the api stores it, the worker counts it.\n"
            uploaded = client.post(
                "/api/upload/", files={"file": ("parity.txt", text.encode())}, headers=headers
            )
            assert uploaded.status_code == 202, uploaded.text
            file_id = uploaded.json()["id"]

            def counted() -> bool:
                body = client.get(f"/api/files/{file_id}/", headers=headers).json()
                return bool(body["status"] == "completed")

            deploy.wait_for(
                counted, timeout=60, what="the worker to count the upload", alive=[api, worker]
            )
            done = client.get(f"/api/files/{file_id}/", headers=headers).json()
            assert done["word_count"] == len(text.split())
            assert (workdir / "media" / done["file"]).read_text() == text

        # 5. Every service stops cleanly on SIGTERM, as `docker compose stop` sends it.
        for api_or_worker in (api, worker):
            api_or_worker.assert_running()
        codes = stack.stop_all(timeout=60)
        assert codes == {"simulator": 0, "beat": 0, "worker": 0, "api": 0, "migrate": 0}, (
            stack.logs()
        )

    assert project_files() == files_before, "the services left files in the project"
