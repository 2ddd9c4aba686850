"""Operator commands: `python -m app <command>`.

create-user  --username U --password P [--email E] [--staff] [--superuser]
check        validate configuration and connectivity (database, schema, broker, media)
migrate      alembic upgrade head on DATABASE_URL
serve        the API server: `--workers N` uvicorn processes, one listening socket each
run          the whole service on this machine: migrate, a Celery worker (with beat),
             the API server; `--simulator` adds the offline aamarPay sandbox simulator
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from pydantic import ValidationError

from app import uow
from app.config import Settings, get_settings
from app.errors import AppError
from app.processes import ChildExited, ChildProcess
from app.serve import ServeOptions

PROJECT_DIR = Path(__file__).resolve().parent.parent


def _print(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def _fail(message: str) -> int:
    sys.stderr.write(message + "\n")
    return 1


# --- create-user -------------------------------------------------------------------------


async def _create_user(settings: Settings, args: argparse.Namespace) -> str:
    from app.db import create_engine, create_sessionmaker
    from app.schemas.users import password_problem, validate_email, validate_username
    from app.services.users import create_user

    username = validate_username(args.username)
    email = validate_email(args.email)
    problem = password_problem(args.password, username)
    if problem:
        raise ValueError(f"password {problem}")
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session:
            user = await create_user(
                session,
                username=username,
                password=args.password,
                email=email,
                is_staff=args.staff,
                is_superuser=args.superuser,
            )
            await uow.commit(session)
            role = "superuser" if user.is_superuser else "staff" if user.is_staff else "user"
            return f"created {role} {user.username!r} (id {user.id})"
    finally:
        await engine.dispose()


def cmd_create_user(args: argparse.Namespace) -> int:
    try:
        _print(asyncio.run(_create_user(get_settings(), args)))
    except (AppError, ValueError) as exc:
        return _fail(f"error: {exc}")
    return 0


# --- check -------------------------------------------------------------------------------


async def _check(settings: Settings) -> list[tuple[str, bool, str]]:
    from sqlalchemy import text

    from app.db import create_engine

    results: list[tuple[str, bool, str]] = []
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            results.append(("database", True, engine.url.render_as_string(hide_password=True)))
            try:
                current = await conn.scalar(text("SELECT version_num FROM alembic_version"))
            except Exception:  # noqa: BLE001
                current = None
        head = _alembic_head()
        results.append(("schema", current == head, f"at {current or 'nothing'}, head is {head}"))
    except Exception as exc:  # noqa: BLE001
        results.append(("database", False, f"{type(exc).__name__}: {exc}"))
    finally:
        await engine.dispose()

    if settings.uses_embedded_broker:
        folder = settings.embedded_broker_dir
        ok = folder.is_dir() and os.access(folder, os.W_OK)
        results.append(("broker", ok, f"embedded filesystem broker in {folder}"))
    else:
        from app.tasks.celery_app import create_celery

        try:
            with create_celery(settings).connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=3)
            results.append(("broker", True, "reachable"))
        except Exception as exc:  # noqa: BLE001
            results.append(("broker", False, f"{type(exc).__name__}: {exc}"))

    media = settings.media_root
    media_ok = media.is_dir() and os.access(media, os.W_OK)
    results.append(("media", media_ok, str(media)))
    results.append(await _check_storage(settings))
    return results


async def _check_storage(settings: Settings) -> tuple[str, bool, str]:
    """The stored uploads' home: the media folder, or the bucket (reachable and writable: a
    tiny probe object is put and deleted under S3_PREFIX)."""
    from app.services import blobstore

    name = f"storage ({settings.storage_backend})"
    try:
        store = await asyncio.wait_for(blobstore.build(settings), 10)
        try:
            return name, True, await asyncio.wait_for(store.check(), 10)
        finally:
            await store.aclose()
    except Exception as exc:  # noqa: BLE001
        return name, False, f"{type(exc).__name__}: {exc}"


def _alembic_head() -> str | None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config(str(PROJECT_DIR / "alembic.ini"))
    return ScriptDirectory.from_config(config).get_current_head()


def configuration_problems(exc: ValidationError) -> str:
    """One line per reason the settings were refused (the start-up refusals of SPEC §9
    among them), each naming its variable."""
    lines = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error.get("loc", ())).upper()
        message = str(error.get("msg", "")).removeprefix("Value error, ")
        for line in message.splitlines():
            lines.append(f"  refused: {field}: {line}" if field else f"  refused: {line}")
    return "\n".join(lines)


def cmd_check(args: argparse.Namespace) -> int:
    try:
        settings = get_settings()
    except ValidationError as exc:
        return _fail(f"configuration: FAILED\n{configuration_problems(exc)}")
    _print(f"configuration: ok (environment={settings.environment})")
    results = asyncio.run(_check(settings))
    for name, ok, detail in results:
        _print(f"{name}: {'ok' if ok else 'FAILED'} ({detail})")
    return 0 if all(ok for _, ok, _ in results) else 1


# --- migrate -----------------------------------------------------------------------------


def migrate() -> None:
    subprocess.run(  # noqa: S603 - fixed argv
        [
            sys.executable,
            "-m",
            "alembic",
            "-c",
            str(PROJECT_DIR / "alembic.ini"),
            "upgrade",
            "head",
        ],
        check=True,
        cwd=os.getcwd(),
    )


def cmd_migrate(args: argparse.Namespace) -> int:
    try:
        migrate()
    except subprocess.CalledProcessError as exc:
        return _fail(f"migration failed (exit {exc.returncode})")
    return 0


# --- run ---------------------------------------------------------------------------------


def _answers_soon(child: ChildProcess, url: str, timeout: float = 20) -> bool:
    import httpx

    def answers() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code < 500
        except httpx.HTTPError:
            return False

    try:
        child.wait_until(answers, timeout=timeout, interval=0.2, what="to answer")
    except (ChildExited, TimeoutError):
        return False
    return True


def cmd_run(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    if args.simulator:
        sim_url = f"http://127.0.0.1:{args.simulator_port}"
        env["AAMARPAY_BASE_URL"] = sim_url
        os.environ["AAMARPAY_BASE_URL"] = sim_url
    env.setdefault("PUBLIC_BASE_URL", f"http://{args.host}:{args.port}")
    os.environ["PUBLIC_BASE_URL"] = env["PUBLIC_BASE_URL"]
    get_settings.cache_clear()
    settings = get_settings()
    settings.media_root.mkdir(parents=True, exist_ok=True)
    _print("applying migrations ...")
    migrate()

    py = sys.executable
    commands: list[tuple[str, list[str]]] = []
    if args.simulator:
        # The simulator notifies the service as aamarPay's IPN would (SPEC §5).
        ipn_url = f"http://127.0.0.1:{args.port}/api/payment/ipn/"
        commands.append(
            (
                "simulator",
                [py, "-m", "simulator", "--port", str(args.simulator_port), "--ipn-url", ipn_url],
            )
        )
    commands.append(
        (
            "worker",
            [
                py,
                "-m",
                "celery",
                "-A",
                "app.tasks.celery_app:celery_app",
                "worker",
                "--beat",
                "--loglevel",
                "INFO",
                "--concurrency",
                str(args.worker_concurrency),
                "--schedule",
                str(Path("var") / "celerybeat-schedule"),
            ],
        )
    )
    commands.append(
        (
            "api",
            ServeOptions(host=args.host, port=args.port).argv(py),
        )
    )
    children = [ChildProcess(name, argv, env=env) for name, argv in commands]
    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        for child in children:
            child.start()
            if child.name == "simulator" and not _answers_soon(
                child, f"{env['AAMARPAY_BASE_URL']}/_sim/config"
            ):
                _print("simulator did not start")
                stopping = True
                break
        if not stopping:
            _print(
                f"serving on http://{args.host}:{args.port}  (dashboard /dashboard/, API docs "
                f"/docs, admin /admin); Ctrl-C stops everything"
            )
        while not stopping:
            for child in children:
                if child.proc is not None and not child.running:
                    _print(f"{child.name} exited with {child.returncode}; stopping")
                    stopping = True
            time.sleep(0.5)
    finally:
        for child in reversed(children):
            if child.stop(grace=20.0) is None and child.proc is not None:
                _print(f"{child.name} did not stop in time; it was killed")
    return 0


# --- serve -------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from app.logging import configure_logging
    from app.serve import serve

    try:
        settings = get_settings()  # a configuration error shows here, before any process starts
    except ValidationError as exc:
        return _fail(f"configuration: FAILED\n{configuration_problems(exc)}")
    configure_logging(settings.log_level, settings.log_format)
    return serve(serve_options(args))


def serve_options(args: argparse.Namespace) -> ServeOptions:
    return ServeOptions(
        host=args.host,
        port=args.port,
        workers=args.workers,
        proxy_headers=args.proxy_headers,
        graceful_timeout=args.timeout_graceful_shutdown,
        log_level=args.log_level,
    )


# --- entry -------------------------------------------------------------------------------


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("create-user", help="create an account (staff for the admin)")
    p.add_argument("--username", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--email")
    p.add_argument("--staff", action="store_true", help="may sign in to /admin")
    p.add_argument("--superuser", action="store_true", help="implies --staff")
    p.set_defaults(func=cmd_create_user)

    p = sub.add_parser("check", help="validate configuration and connectivity")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("migrate", help="apply database migrations (alembic upgrade head)")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("serve", help="the API server (uvicorn processes on the asyncio loop)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=_positive_int, default=1, help="processes (default 1)")
    p.add_argument(
        "--proxy-headers",
        action="store_true",
        help="trust X-Forwarded-For/-Proto from FORWARDED_ALLOW_IPS (behind a reverse proxy)",
    )
    p.add_argument(
        "--timeout-graceful-shutdown",
        type=float,
        default=25.0,
        metavar="SECONDS",
        help="on SIGTERM, how long requests in flight may take to finish (default 25)",
    )
    p.add_argument(
        "--log-level", default="info", choices=("critical", "error", "warning", "info", "debug")
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("run", help="run api + worker (+ simulator) on this machine")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--worker-concurrency", type=int, default=2)
    p.add_argument("--simulator", action="store_true", help="use the offline gateway simulator")
    p.add_argument("--simulator-port", type=int, default=8001)
    p.set_defaults(func=cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
