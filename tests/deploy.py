"""The deployment files as data, and the compose services run natively (no Docker).

Two users:

* `tests/unit/test_deploy_files.py` reads docker-compose.yml, the Dockerfile, .env.example and
  .dockerignore through the parsers here and checks what they promise.
* `tests/integration/test_compose_parity.py` runs, on this machine, exactly the commands the
  compose services run, with the environment their containers get. Only what cannot be the same
  outside a container is translated, by `NativeLayout`, in a few explicit steps:

  - container paths (WORKDIR /app, the /data/media volume, /tmp, the /opt/venv virtualenv) map to
    local folders;
  - compose service names in URLs (`@mysql:3306`, `redis://redis:6379`) become 127.0.0.1;
  - a published container port (`--port 8000`, `http://localhost:8001`) maps to a free local one,
    and `--host 0.0.0.0` listens on 127.0.0.1 only;
  - Docker's own HOSTNAME is the machine's hostname;
  - the test's services (database, Redis) replace the compose ones through `overrides`.

The container's environment is built as Docker builds it: the image's ENV (final Dockerfile
stage), then `env_file` (.env), then the service's `environment`; `${...}` in the compose file is
filled in from .env, as Compose does.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from app.processes import ChildProcess

PROJECT_DIR = Path(__file__).resolve().parent.parent
COMPOSE_FILE = PROJECT_DIR / "docker-compose.yml"
DOCKERFILE = PROJECT_DIR / "Dockerfile"
DOCKERIGNORE = PROJECT_DIR / ".dockerignore"
ENV_EXAMPLE = PROJECT_DIR / ".env.example"
HADOLINT_CONFIG = PROJECT_DIR / ".hadolint.yaml"

#: The fixed process entry points (SPEC §2).
ASGI_APP = "app.main:app"
#: How the api container starts its server (app/serve.py runs uvicorn on ASGI_APP).
API_SERVER = ["python", "-m", "app", "serve"]
CELERY_APP = "app.tasks.celery_app:celery_app"


class ComposeError(ValueError):
    """The compose file cannot be read as Compose would read it."""


# --- .env files ----------------------------------------------------------------------------

_ENV_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")


def read_env_file(path: Path) -> dict[str, str]:
    """A `.env` file as Compose reads it: `NAME=value` lines, `#` comments, optional quotes."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _ENV_LINE.match(line)
        if not match:
            raise ComposeError(f"{path.name}:{number}: not NAME=value: {raw!r}")
        name, value = match.groups()
        if name in values:
            raise ComposeError(f"{path.name}:{number}: {name} is set twice")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = re.sub(r"\s+#.*$", "", value).strip()
        values[name] = value
    return values


# --- compose interpolation -----------------------------------------------------------------

_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?", re.S)


def referenced_variables(text: str) -> set[str]:
    """Names used in `${NAME...}` / `$NAME` interpolations (not `$$` escapes)."""
    names: set[str] = set()
    for match in _INTERPOLATION.finditer(text):
        if match.group("escaped"):
            continue
        if match.group("named"):
            names.add(match.group("named"))
            continue
        braced = _BRACED.fullmatch(match.group("braced"))
        if braced is None:
            raise ComposeError(f"invalid interpolation {match.group(0)!r}")
        names.add(braced.group("name"))
    return names


def compose_variables(document: Any) -> set[str]:
    """Every variable the (parsed) compose file interpolates, anywhere in it."""
    if isinstance(document, str):
        return referenced_variables(document)
    if isinstance(document, list):
        return set().union(*(compose_variables(item) for item in document))
    if isinstance(document, dict):
        return set().union(*(compose_variables(value) for value in document.values()))
    return set()


def interpolate(text: str, variables: Mapping[str, str]) -> str:
    """Compose's interpolation: `$$`, `$NAME`, `${NAME}`, `${NAME:-default}`, `${NAME-default}`,
    `${NAME:?error}`, `${NAME?error}`, `${NAME:+alternative}`, `${NAME+alternative}`."""

    def substitute(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        if match.group("named"):
            return variables.get(match.group("named"), "")
        braced = _BRACED.fullmatch(match.group("braced"))
        if braced is None:
            raise ComposeError(f"invalid interpolation {match.group(0)!r}")
        name, op, arg = braced.group("name", "op", "arg")
        value = variables.get(name)
        if op is None:
            return value or ""
        missing = value is None or (op.startswith(":") and value == "")
        if op.endswith("-"):
            return interpolate(arg, variables) if missing else str(value)
        if op.endswith("?"):
            if missing:
                raise ComposeError(f"required variable {name} is missing a value: {arg}")
            return str(value)
        return "" if missing else interpolate(arg, variables)

    return _INTERPOLATION.sub(substitute, text)


def _interpolate_tree(node: Any, variables: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, variables)
    if isinstance(node, list):
        return [_interpolate_tree(item, variables) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate_tree(value, variables) for key, value in node.items()}
    return node


def load_compose(
    variables: Mapping[str, str] | None = None, path: Path = COMPOSE_FILE
) -> dict[str, Any]:
    """The compose file; with `variables` (the `.env`), interpolated as Compose does."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict):
        raise ComposeError(f"{path.name} is not a mapping")
    return document if variables is None else dict(_interpolate_tree(document, variables))


def service(compose: Mapping[str, Any], name: str) -> dict[str, Any]:
    services = compose.get("services") or {}
    if name not in services:
        raise ComposeError(f"no service {name!r} in the compose file")
    return dict(services[name])


def service_environment(svc: Mapping[str, Any]) -> dict[str, str]:
    """`environment:` in either form (mapping, or a list of NAME=value)."""
    env = svc.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def service_command(svc: Mapping[str, Any]) -> list[str]:
    command = svc.get("command")
    if command is None:
        raise ComposeError("the service has no command (would run the image's CMD)")
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def env_files(svc: Mapping[str, Any]) -> list[str]:
    files = svc.get("env_file") or []
    items = [files] if isinstance(files, str | dict) else list(files)
    return [item["path"] if isinstance(item, dict) else str(item) for item in items]


def volume_mounts(svc: Mapping[str, Any]) -> dict[str, str]:
    """Named-volume or bind mounts as {source: target} (short and long syntax)."""
    mounts: dict[str, str] = {}
    for item in svc.get("volumes") or []:
        if isinstance(item, str):
            source, target = item.split(":")[:2]
        else:
            source, target = item.get("source", ""), item["target"]
        mounts[source] = target
    return mounts


def healthcheck_argv(test: str | Sequence[str]) -> list[str]:
    """A healthcheck `test` as the argv Docker runs (CMD-SHELL goes through /bin/sh -c)."""
    if isinstance(test, str):
        return ["/bin/sh", "-c", test]
    kind, *rest = test
    if kind == "CMD":
        return list(rest)
    if kind == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(rest)]
    raise ComposeError(f"healthcheck test {test!r} runs nothing")


# --- Dockerfile ----------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON (exec) form of CMD/ENTRYPOINT/RUN/HEALTHCHECK CMD, if used."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = re.sub(r"^(?:--\S+\s+)*CMD\s+", "", text)
        text = text.strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        return [str(v) for v in value]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def of(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(path: Path = DOCKERFILE) -> list[Stage]:
    """Stages and their instructions (continuations joined, comments dropped)."""
    stages: list[Stage] = []
    pending = ""
    start = 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = (pending + stripped).strip()
        pending = ""
        if not text:
            continue
        keyword, _, args = text.partition(" ")
        instruction = Instruction(keyword.upper(), args.strip(), start)
        if instruction.keyword == "FROM":
            match = re.fullmatch(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", instruction.args, re.I)
            if match is None:
                raise ValueError(f"Dockerfile:{start}: cannot read FROM {instruction.args!r}")
            stages.append(Stage(base=match.group(1), name=match.group(2)))
        elif not stages:
            if instruction.keyword != "ARG":
                raise ValueError(f"Dockerfile:{start}: {instruction.keyword} before FROM")
        else:
            stages[-1].instructions.append(instruction)
    return stages


def _expand(value: str, env: Mapping[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: env.get(m.group(1), ""), value)


def image_env(stage: Stage, base: Mapping[str, str]) -> dict[str, str]:
    """The environment the stage's ENV lines give a container (on top of the base image's)."""
    env = dict(base)
    for instruction in stage.of("ENV"):
        words = shlex.split(instruction.args)
        if words and "=" not in words[0]:  # legacy `ENV NAME value`
            env[words[0]] = _expand(" ".join(words[1:]), env)
            continue
        for word in words:
            name, _, value = word.partition("=")
            env[name] = _expand(value, env)
    return env


def image_workdir(stage: Stage) -> str:
    workdirs = stage.of("WORKDIR")
    return workdirs[-1].args if workdirs else "/"


# --- .dockerignore -------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def dockerignore_excludes(path: str, patterns: Sequence[str]) -> bool:
    """Whether the build context leaves `path` out: the last matching pattern wins, and a
    pattern matching a parent folder matches everything below it (as Docker does)."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = os.path.normpath(pattern.strip()).lstrip("/")
        regex = _pattern_regex(pattern)
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def read_dockerignore(path: Path = DOCKERIGNORE) -> list[str]:
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


# --- native runs of the compose services --------------------------------------------------


@dataclass
class NativeLayout:
    """How the containers' world maps onto this machine (see the module docstring)."""

    #: container path -> local path, e.g. {"/app": PROJECT_DIR, "/data/media": tmp / "media"}
    paths: dict[str, Path]
    #: container port -> local port
    ports: dict[int, int] = field(default_factory=dict)
    #: compose service names that stand for a host in URLs
    hosts: frozenset[str] = frozenset()

    def local_path_text(self, text: str) -> str:
        if not self.paths:
            return text
        # One pass, longest prefix first, so that a local path is never translated again.
        prefixes = "|".join(re.escape(p) for p in sorted(self.paths, key=len, reverse=True))
        return re.sub(
            rf"(?<![^:=\s,])(?:{prefixes})(?=[/:\s,]|$)",
            lambda m: str(self.paths[m.group(0)]),
            text,
        )

    def local_hosts(self, text: str) -> str:
        if not self.hosts:
            return text
        names = "|".join(re.escape(h) for h in sorted(self.hosts))
        return re.sub(rf"(?<=[/@])(?:{names})(?=[:/]|$)", "127.0.0.1", text)

    def local_ports(self, text: str) -> str:
        for container, local in self.ports.items():
            text = re.sub(
                rf"(//(?:localhost|127\.0\.0\.1|0\.0\.0\.0):){container}(?!\d)",
                rf"\g<1>{local}",
                text,
            )
        return text

    def local_value(self, text: str) -> str:
        return self.local_ports(self.local_hosts(self.local_path_text(text)))

    def local_argv(self, argv: Sequence[str]) -> list[str]:
        out: list[str] = []
        previous = ""
        for token in argv:
            if previous == "--host" and token == "0.0.0.0":
                token = "127.0.0.1"
            elif previous == "--port" and token.isdigit() and int(token) in self.ports:
                token = str(self.ports[int(token)])
            else:
                token = self.local_value(token)
            out.append(token)
            previous = token if token.startswith("--") else ""
        return out


@dataclass
class NativeCommand:
    service: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path


#: What the test process passes on to the services (the rest comes from the image and compose).
_INHERITED = ("HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


@dataclass
class ComposeProject:
    """docker-compose.yml + Dockerfile + a `.env`, ready to run services natively."""

    dotenv: dict[str, str]
    layout: NativeLayout
    overrides: dict[str, str] = field(default_factory=dict)
    compose_file: Path = COMPOSE_FILE
    dockerfile: Path = DOCKERFILE

    def compose(self) -> dict[str, Any]:
        # Compose fills ${...} from the shell environment first, then .env; a test must not
        # depend on the shell it runs in, so only the .env counts here.
        return load_compose(self.dotenv, self.compose_file)

    def _final_stage(self) -> Stage:
        return parse_dockerfile(self.dockerfile)[-1]

    def container_env(self, name: str) -> dict[str, str]:
        """The environment a container of service `name` gets: image ENV, env_file, environment
        (for an env_file other than .env, the file itself is read)."""
        svc = service(self.compose(), name)
        env = image_env(self._final_stage(), {"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        env["HOSTNAME"] = socket.gethostname()
        for env_file in env_files(svc):
            if env_file == ".env":
                env.update(self.dotenv)
            else:
                env.update(read_env_file(self.compose_file.parent / env_file))
        env.update(service_environment(svc))
        return env

    def native(self, name: str) -> NativeCommand:
        """The service's command and environment, translated for this machine."""
        svc = service(self.compose(), name)
        env = {k: os.environ[k] for k in _INHERITED if k in os.environ}
        env.update({k: self.layout.local_value(v) for k, v in self.container_env(name).items()})
        env.update(self.overrides)
        argv = self.layout.local_argv(service_command(svc))
        workdir = image_workdir(self._final_stage())
        cwd = Path(self.layout.local_path_text(workdir))
        return NativeCommand(name, _resolve_program(argv, env), env, cwd)

    def healthcheck(self, name: str) -> NativeCommand:
        """The service's compose healthcheck, as it would run inside its container."""
        svc = service(self.compose(), name)
        check = svc.get("healthcheck") or {}
        if check.get("disable") or "test" not in check:
            raise ComposeError(f"service {name!r} has no healthcheck")
        command = self.native(name)
        argv = self.layout.local_argv(healthcheck_argv(check["test"]))
        return NativeCommand(name, _resolve_program(argv, command.env), command.env, command.cwd)


def _resolve_program(argv: list[str], env: Mapping[str, str]) -> list[str]:
    """argv[0] looked up on the container's PATH (translated: the image's virtualenv first)."""
    if not argv or os.path.isabs(argv[0]):
        return argv
    program = shutil.which(argv[0], path=env.get("PATH"))
    if program is None:
        raise ComposeError(f"{argv[0]!r} is not on the service's PATH ({env.get('PATH')})")
    return [program, *argv[1:]]


class ServiceProcess(ChildProcess):
    """One compose service run natively (app.processes: its own process group, a log file).
    `stop()` does what `docker compose stop` does: SIGTERM to the service's main process (tini
    passes it to its one child), SIGKILL to all of them after the grace period."""

    def __init__(self, command: NativeCommand, log_dir: Path) -> None:
        super().__init__(
            command.service,
            command.argv,
            log_path=log_dir / f"{command.service}.log",
            env=command.env,
            cwd=command.cwd,
        )
        self.command = command

    def assert_running(self) -> None:
        code = self.returncode
        if code is not None:
            raise AssertionError(f"{self.name} exited with {code}:\n{self.tail()}")


class NativeStack:
    """Services started in order and stopped in reverse order (always, even on failure)."""

    def __init__(self, project: ComposeProject, log_dir: Path) -> None:
        self.project = project
        self.log_dir = log_dir
        self.processes: list[ServiceProcess] = []

    def start(self, name: str) -> ServiceProcess:
        process = ServiceProcess(self.project.native(name), self.log_dir).start()
        self.processes.append(process)
        return process

    def run_once(self, name: str, timeout: float) -> tuple[int, str]:
        """Run a one-shot service (migrate) to completion: exit code and output."""
        process = self.start(name)
        code = process.wait(timeout)
        return code, process.log()

    def healthcheck(self, name: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        command = self.project.healthcheck(name)
        return subprocess.run(  # noqa: S603 - argv from the compose file
            command.argv,
            cwd=command.cwd,
            env=command.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def stop_all(self, timeout: float = 30) -> dict[str, int | None]:
        codes: dict[str, int | None] = {}
        for process in reversed(self.processes):
            codes[process.name] = process.stop(timeout)
        return codes

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.tail()}" for p in self.processes)

    def __enter__(self) -> NativeStack:
        return self

    def __exit__(self, *exc: object) -> None:
        for process in reversed(self.processes):
            if process.returncode is None:
                process.stop()


def wait_for(
    predicate: Any,
    *,
    timeout: float,
    what: str,
    interval: float = 0.2,
    alive: Sequence[ServiceProcess] = (),
) -> Any:
    """Bounded poll: the first truthy `predicate()` value; fails early if a process died."""
    deadline = time.monotonic() + timeout
    while True:
        for process in alive:
            process.assert_running()
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            logs = "".join(f"\n--- {p.name}\n{p.tail()}" for p in alive)
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{logs}")
        time.sleep(interval)


def http_status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None
