"""docker-compose.yml and the Dockerfile, checked against the code.

No Docker engine runs on these machines, so nothing here builds or starts a container: the
compose file is read with PyYAML and held against what the services really read (their pydantic
settings classes), the ports of the design and of each settings class, the app factories, and
the Dockerfile's final stage. The secrets compose mounts are made afresh by the commands that make
them (`unbind kafka secrets`, `unbind keys generate --compose`), and each container's settings,
built from its environment with its mounts, must load the keys it needs: no more, no default.
"""

from __future__ import annotations

import asyncio
import fnmatch
import importlib
import os
import re
import socket
import subprocess
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError
from pydantic import AliasChoices, TypeAdapter
from setuptools import find_namespace_packages, find_packages

from shared.auth import audience_of, decode_token
from shared.kafka_security import KafkaSecurity
from shared.keys import SigningKey, service_of_kid
from shared.migrations import SERVICES as DATABASE_SERVICES
from shared.settings import RefusedToStart, ServiceSettings
from tests.deploy.keys import key_settings
from tools import kafka
from tools.kafka_access import Cluster
from tools.kafka_secrets import DEFAULT_OUT, write_compose_secrets
from tools.keys import KEYS_DIR, InstallationKeys, generate_for_deployment
from tools.main import main
from tools.services import APPS, settings_class

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
# The design contract (a copy in the repository of the one the project grew from).
DESIGN = ROOT / "docs" / "design.md"

INFRASTRUCTURE = ("kafka", "postgres")
JOBS = ("migrate", "kafka-setup")
# Where `unbind keys generate --out deploy/secrets/keys --compose` writes the keys compose mounts; under
# a folder named `keys`, so `unbind --var-dir deploy/secrets token` mints the stack's tokens.
KEYS_OUT = Path("deploy/secrets/keys")
MOUNT_DIR = "/run/secrets/"
# Settings a container leaves to the code, and why; every other field must be passed.
NOT_PASSED = {
    "consumer_group": "every instance of a service shares its default group unbind-<service>",
    "jwt_audience": (
        "each service's own default, unbind-<service>: one value for all would have each accept tokens meant "
        "for another"
    ),
    "login_link_dir": (
        "the one-time links are a development aid of `unbind up`; ops paste a token of their identity "
        "provider"
    ),
}
NO_DATABASE = {"database_server_url", "database_url", "database_pool_size"}
# `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?error}`; `$$` is a literal dollar.
INTERPOLATION = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
SECRET_NAME = re.compile(r"SECRET|PASSWORD|KEY|TOKEN")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


@pytest.fixture(scope="module")
def kafka_secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `unbind kafka secrets` writes into deploy/secrets/kafka, made afresh in a temporary folder."""
    out = tmp_path_factory.mktemp("secrets") / "kafka"
    write_compose_secrets(out)
    return out


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> InstallationKeys:
    """What `unbind keys generate --out deploy/secrets/keys --compose` writes, made afresh at that path
    under a temporary folder."""
    out = tmp_path_factory.mktemp("checkout") / KEYS_OUT
    generate_for_deployment(out, compose=True)
    return InstallationKeys(out)


def mounts(
    compose: dict[str, Any], service: str, kafka_secrets: Path, keys: InstallationKeys
) -> dict[str, Path]:
    """{path in the container: the generated file} of each secret a service lists."""
    found = {}
    for name in compose["services"][service].get("secrets", []):
        path = Path(compose["secrets"][name]["file"])
        folder = {DEFAULT_OUT: kafka_secrets, KEYS_OUT: keys.dir}.get(path.parent)
        assert folder is not None, (
            f"the secret {name} ({path}) is made by neither `unbind kafka secrets` nor `unbind keys generate`"
        )
        found[f"{MOUNT_DIR}{name}"] = folder / path.name
    return found


def env_files(service: dict[str, Any], kafka_secrets: Path) -> dict[str, str]:
    """The variables a service's env_files give it, as `unbind kafka secrets` writes them."""
    values: dict[str, str] = {}
    for name in service.get("env_file", []):
        path = Path(name)
        assert path.parent == DEFAULT_OUT, f"{name} is not a file `unbind kafka secrets` writes"
        lines = (kafka_secrets / path.name).read_text().splitlines()
        values.update(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return values


def environment(service: dict[str, Any], kafka_secrets: Path) -> dict[str, Any]:
    """A container's whole environment: its env_files, then its `environment` (which wins)."""
    return {**env_files(service, kafka_secrets), **service.get("environment", {})}


def env_names(cls: type[ServiceSettings]) -> dict[str, str]:
    """{environment variable: field} as pydantic-settings reads them: the alias when a field has
    one (the prefix then does not apply), else env_prefix + the field name."""
    config = cls.model_config
    prefix = config.get("env_prefix", "")
    names = {}
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias or field.alias
        if alias is None:
            candidates = [prefix + field_name]
        elif isinstance(alias, AliasChoices):
            candidates = [choice for choice in alias.choices if isinstance(choice, str)]
        else:
            candidates = [alias]
        for candidate in candidates:
            names[candidate if config.get("case_sensitive") else candidate.upper()] = field_name
    return names


def env_example() -> dict[str, str]:
    """The variables .env.example sets (its uncommented lines)."""
    lines = (line.strip() for line in ENV_EXAMPLE.read_text().splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def resolve(value: Any, example: dict[str, str] | None = None) -> str:
    """A compose value as the container gets it with a fresh `cp .env.example .env` (or with `example`
    as the .env)."""
    example = env_example() if example is None else example

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if name in example:
            return example[name]
        if op in (":-", "-"):
            return arg
        raise AssertionError(f"${{{name}}} has no default and .env.example does not set it")

    return INTERPOLATION.sub(substitute, str(value)).replace("$$", "$")


def settings_from(
    environment: dict[str, Any],
    cls: type[ServiceSettings],
    monkeypatch: pytest.MonkeyPatch,
    mounted: dict[str, Path] | None = None,
    *,
    example: dict[str, str] | None = None,
) -> ServiceSettings:
    """The settings object a container with this environment builds, and nothing else; a path of a
    secret it mounts is that secret's generated file (any other /run/secrets path does not exist)."""
    for name in list(os.environ):
        if name.upper().startswith(("UNBIND_", "KAFKA_")):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        value = resolve(value, example)
        monkeypatch.setenv(name, str((mounted or {}).get(value, value)))
    return cls()


# --------------------------------------------------------------------------- services


def test_every_service_is_there(services: dict[str, Any]) -> None:
    missing = {*APPS, *INFRASTRUCTURE, *JOBS} - set(services)
    assert not missing, f"docker-compose.yml lacks {sorted(missing)}"


@pytest.mark.parametrize("app", APPS)
def test_environment_keys_are_settings_of_the_service(
    services: dict[str, Any], app: str, kafka_secrets: Path
) -> None:
    known = env_names(settings_class(app))
    unknown = sorted(set(environment(services[app], kafka_secrets)) - set(known))
    assert not unknown, (
        f"{app}: {unknown} are not settings of {settings_class(app).__name__} (typo? the service would "
        f"ignore them)"
    )


@pytest.mark.parametrize("app", APPS)
def test_every_setting_is_passed(services: dict[str, Any], app: str, kafka_secrets: Path) -> None:
    cls = settings_class(app)
    names = env_names(cls)
    passed = {names[key] for key in environment(services[app], kafka_secrets) if key in names}
    left_to_the_code = set(NOT_PASSED) | (set() if app in DATABASE_SERVICES else NO_DATABASE)
    # A secret comes as a mounted file (<name>_file), never as a value; only a service that signs has a key.
    left_to_the_code |= set(cls.required_secrets) | (set() if cls.needs_signing_key else {"signing_key_file"})
    missing = sorted(set(cls.model_fields) - passed - left_to_the_code)
    assert not missing, (
        f"{app}: settings {missing} are not passed through the environment (add them, or to NOT_PASSED with "
        f"the reason)"
    )


@pytest.mark.parametrize("app", APPS)
def test_a_default_in_compose_is_the_code_default(services: dict[str, Any], app: str) -> None:
    """`${X:-default}` hands X through from .env; without it the service must behave as it
    does without a .env under `unbind up`, so the default must be the settings class's own."""
    cls = settings_class(app)
    names = env_names(cls)
    for key, value in services[app]["environment"].items():
        match = INTERPOLATION.fullmatch(str(value))
        if not match or match["name"] != key or match["op"] not in (":-", "-"):
            continue
        field = cls.model_fields[names[key]]
        if match["arg"] == "" and field.default in (None, ""):
            continue
        default = TypeAdapter(field.annotation).validate_python(match["arg"])
        assert default == field.default, (
            f"{app}: {key} defaults to {match['arg']!r} in compose, the code says {field.default!r}"
        )


@pytest.mark.parametrize("app", APPS)
def test_the_environment_builds_the_settings(
    compose: dict[str, Any],
    services: dict[str, Any],
    app: str,
    monkeypatch: pytest.MonkeyPatch,
    *,
    kafka_secrets: Path,
    keys: InstallationKeys,
) -> None:
    mounted = mounts(compose, app, kafka_secrets, keys)
    settings = settings_from(
        environment(services[app], kafka_secrets), settings_class(app), monkeypatch, mounted
    )
    assert settings.kafka_bootstrap_servers == "kafka:19092"
    # .env.example asks for the demo data; the compose default is the code's, production.
    assert settings.env == env_example()["UNBIND_ENV"] == "development"
    assert (
        settings_from(
            environment(services[app], kafka_secrets),
            settings_class(app),
            monkeypatch,
            mounted,
            example={"POSTGRES_PASSWORD": "p"},
        ).env
        == "production"
    )
    # Its own principal, over TLS, checking the broker against the CA it is given.
    security = settings.kafka_security()
    assert (security.username, security.protocol, security.mechanism) == (app, "SASL_SSL", "SCRAM-SHA-512")
    assert security.password == (kafka_secrets / f"{app}.env").read_text().strip().split("=", 1)[1]
    assert services[app]["environment"][
        "KAFKA_SSL_CAFILE"
    ] == "/run/secrets/kafka-ca" and security.cafile == str(kafka_secrets / "ca.pem")
    if app in DATABASE_SERVICES:
        assert (
            settings.database_url
            == f"postgresql+asyncpg://unbind:{env_example()['POSTGRES_PASSWORD']}@postgres:5432/unbind_{app}"
        )
    # It starts: the JWKS, its own key if it signs and its secrets are all there, from its mounts.
    loaded = settings.load_keys()
    assert settings.jwks_url in (None, "") and loaded.trusted.source == str(keys.jwks_file)
    assert (loaded.signing is not None) == settings_class(app).needs_signing_key
    if loaded.signing is not None:
        assert service_of_kid(loaded.signing.kid) == app
    for name in settings_class(app).required_secrets:
        assert getattr(settings, name).get_secret_value() == keys.secret(name)


@pytest.mark.parametrize("app", APPS)
def test_each_service_is_given_its_own_keys_and_secrets_and_no_other(
    compose: dict[str, Any],
    services: dict[str, Any],
    app: str,
    kafka_secrets: Path,
    *,
    keys: InstallationKeys,
) -> None:
    """Every key and secret the settings class requires comes from a secret compose mounts, as a file;
    the service mounts nothing else: no other service's key, no secret it does not read."""
    cls = settings_class(app)
    mounted = mounts(compose, app, kafka_secrets, keys)
    env = services[app]["environment"]
    wanted = {
        keys.jwks_file,
        kafka_secrets / "ca.pem",
        *(keys.secret_file(name) for name in cls.required_secrets),
    }
    wanted |= {keys.service_key_file(app)} if cls.needs_signing_key else set()
    assert set(mounted.values()) == wanted, f"{app} mounts {sorted(p.name for p in mounted.values())}"
    for variable in key_settings(cls):
        assert env.get(variable) in mounted, f"{app}: {variable} is not the path of a secret it mounts"
    for name in cls.required_secrets:
        assert f"UNBIND_{name.upper()}" not in env, (
            f"{app}: {name} is given as a value, not as a mounted file"
        )
    # Every mounted secret is read by a setting; no other key setting is there.
    read = {value for value in env.values() if str(value).startswith(MOUNT_DIR)}
    assert read == set(mounted), (
        f"{app}: mounts {sorted(set(mounted) - read)} that nothing reads, or reads "
        f"{sorted(read - set(mounted))} it does not mount"
    )
    assert ("UNBIND_SIGNING_KEY_FILE" in env) == cls.needs_signing_key
    for path in mounted.values():
        if path.suffix == ".jwk":
            assert service_of_kid(SigningKey.load(path).kid) == app, (
                f"{app} mounts another's key: {path.name}"
            )


def test_no_container_gets_the_issuer_s_or_the_customer_system_s_key(
    compose: dict[str, Any], kafka_secrets: Path, keys: InstallationKeys
) -> None:
    """The private keys compose mounts are exactly the signing services' own; the issuer's (customer and
    ops tokens) and the bank's customer system's stay on the host, as does secrets.env."""
    read = {
        path
        for name in compose["services"]
        for path in mounts(compose, name, kafka_secrets, keys).values()
        if path.parent == keys.dir
    }
    signing = {keys.service_key_file(app) for app in APPS if settings_class(app).needs_signing_key}
    secrets = {keys.secret_file(name) for app in APPS for name in settings_class(app).required_secrets}
    assert read == {keys.jwks_file, *signing, *secrets}
    assert {path.name for path in keys.dir.iterdir()} - {path.name for path in read} == {
        "issuer.jwk",
        "customer-system.jwk",
        "secrets.env",
    }
    assert {
        SigningKey.load(keys.issuer_key_file).kid,
        SigningKey.load(keys.service_key_file("customer-system")).kid,
    }.isdisjoint(SigningKey.load(path).kid for path in read if path.suffix == ".jwk")


@pytest.mark.parametrize("app", APPS)
def test_production_without_its_keys_refuses_to_start(
    compose: dict[str, Any],
    services: dict[str, Any],
    app: str,
    monkeypatch: pytest.MonkeyPatch,
    *,
    kafka_secrets: Path,
    keys: InstallationKeys,
) -> None:
    """No fallback anywhere: without the mounted files, or without any one key setting, the service
    refuses to start in production, naming the setting."""
    cls = settings_class(app)
    env = {**environment(services[app], kafka_secrets), "UNBIND_ENV": "production"}
    with pytest.raises(RefusedToStart):
        settings_from(env, cls, monkeypatch).load_keys()  # `keys generate` not run: nothing to mount
    mounted = mounts(compose, app, kafka_secrets, keys)
    for variable in key_settings(cls):
        without = {name: value for name, value in env.items() if name != variable}
        with pytest.raises(RefusedToStart, match=variable.removesuffix("_FILE")):
            settings_from(without, cls, monkeypatch, mounted).load_keys()


@pytest.mark.parametrize("app", APPS)
def test_each_service_reads_its_own_kafka_password_and_no_other(
    services: dict[str, Any], app: str, kafka_secrets: Path
) -> None:
    assert services[app]["env_file"] == [str(DEFAULT_OUT / f"{app}.env")]
    assert set(env_files(services[app], kafka_secrets)) == {"KAFKA_SASL_PASSWORD"}
    assert services[app]["environment"]["KAFKA_SASL_USERNAME"] == app


def test_no_secret_has_a_committed_default(compose: dict[str, Any]) -> None:
    """A secret-looking variable handed through from .env is required (`${X:?...}`), never defaulted; no
    key or secret setting of a service is a literal value: each is a mounted file."""
    for match in INTERPOLATION.finditer(COMPOSE.read_text()):
        name, op = match["name"], match["op"]
        if SECRET_NAME.search(name):
            assert op in (":?", "?", None), f"${{{name}}} has a committed default"
    for app in APPS:
        cls = settings_class(app)
        for variable, value in compose["services"][app]["environment"].items():
            if variable.startswith("UNBIND_") and SECRET_NAME.search(variable):
                assert variable in key_settings(cls) and str(value).startswith(MOUNT_DIR), (
                    f"{app}: {variable}={value!r}"
                )
    shared = {
        name: block for name, block in compose.items() if name.startswith("x-") and isinstance(block, dict)
    }
    assert not [(name, key) for name, block in shared.items() for key in block if SECRET_NAME.search(key)], (
        "a shared block holds a key or secret"
    )


def test_every_required_variable_is_in_env_example() -> None:
    required = {
        match["name"]
        for match in INTERPOLATION.finditer(COMPOSE.read_text())
        if match["op"] in (":?", "?", None)
    }
    missing = sorted(required - set(env_example()))
    assert not missing, (
        f"`cp .env.example .env && docker compose up` would fail: .env.example does not set {missing}"
    )


def test_migrate_sees_the_services_databases_and_no_key(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`unbind migrate` loads every service's settings: it needs the same mode and database as the
    services, or it migrates another database. It needs no key or secret, and gets none."""
    migrate = services["migrate"]["environment"]
    assert "secrets" not in services["migrate"] and "env_file" not in services["migrate"]
    known: set[str] = set()
    for app in DATABASE_SERVICES:
        cls = settings_class(app)
        names = env_names(cls)
        known |= set(names)
        for field in ("env", "database_server_url", "database_url"):
            key = next(
                name
                for name, known_field in names.items()
                if known_field == field and name.startswith("UNBIND_")
            )
            assert key in migrate, f"migrate lacks {key} ({app})"
            assert migrate[key] == services[app]["environment"][key], f"migrate and {app} disagree on {key}"
        settings = settings_from(
            migrate, cls, monkeypatch, example={**env_example(), "UNBIND_ENV": "production"}
        )
        assert (
            settings.env == "production" and settings.jwks_file is None and settings.signing_key_file is None
        )
    unknown = sorted(set(migrate) - known)
    assert not unknown, f"migrate: {unknown} are not settings of any service"
    given = sorted(name for name in migrate if SECRET_NAME.search(name) or "JWKS" in name)
    assert not given, f"migrate is given {given}"


def test_the_stack_s_tokens_are_minted_from_its_keys_folder(
    compose: dict[str, Any],
    services: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *,
    kafka_secrets: Path,
    keys: InstallationKeys,
) -> None:
    """`unbind --var-dir deploy/secrets token` (docs/deployment.md's way) signs with
    deploy/secrets/keys/issuer.jwk, and the services of the stack accept what it prints."""
    assert KEYS_OUT.name == KEYS_DIR, "`--var-dir deploy/secrets` reads <var>/keys"
    assert f"--var-dir {KEYS_OUT.parent} token" in (ROOT / "docs" / "deployment.md").read_text()
    var_dir = keys.dir.parent
    monkeypatch.delenv("UNBIND_VAR_DIR", raising=False)
    for role, app in (("customer", "binding"), ("ops", "dashboard")):
        assert main(["--var-dir", str(var_dir), "token", "--user", "u-zhangsan", "--role", role]) == 0
        token = capsys.readouterr().out.strip()
        settings = settings_from(
            environment(services[app], kafka_secrets),
            settings_class(app),
            monkeypatch,
            mounts(compose, app, kafka_secrets, keys),
        )
        principal = asyncio.run(decode_token(settings.load_keys().trusted, token, audience=audience_of(app)))
        assert (principal.subject, principal.roles) == ("u-zhangsan", frozenset({role}))


# --------------------------------------------------------------------------- ports and commands


def design_ports() -> dict[str, int]:
    """`binding :8001`, ... as the design writes them."""
    ports: dict[str, set[int]] = {}
    for name, port in re.findall(r"\b([a-z]+) :(\d{4,5})\b", DESIGN.read_text()):
        ports.setdefault(name, set()).add(int(port))
    assert all(len(found) == 1 for found in ports.values()), (
        f"the design gives one service several ports: {ports}"
    )
    return {name: found.pop() for name, found in ports.items()}


@pytest.mark.parametrize("app", APPS)
def test_ports(services: dict[str, Any], app: str) -> None:
    port = settings_class(app).default_port
    assert design_ports().get(app) == port, (
        f"{app}: design.md and {settings_class(app).__name__}.default_port differ"
    )
    service = services[app]
    assert service["ports"] == [f"127.0.0.1:{port}:{port}"]
    command = service["command"]
    assert command[command.index("--port") + 1] == str(port)


@pytest.mark.parametrize("app", APPS)
def test_the_command_starts_the_app(services: dict[str, Any], app: str) -> None:
    command = services[app]["command"]
    factory = f"services.{app}.main:create_app"
    assert command[:3] == ["uvicorn", "--factory", factory]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    module, name = factory.split(":")
    assert callable(getattr(importlib.import_module(module), name))


def test_the_jobs_run_what_they_should(services: dict[str, Any]) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["unbind"] == "tools.main:main"
    migrate = " ".join(services["migrate"]["command"])
    assert "unbind migrate" in migrate and "unbind seed" in migrate
    setup = services["kafka-setup"]
    assert setup["entrypoint"] == ["/bin/bash", "/etc/unbind/kafka-setup.sh"]
    assert "./deploy/k8s/setup/kafka-setup.sh:/etc/unbind/kafka-setup.sh:ro" in setup["volumes"], (
        "the script Kubernetes' setup Job runs"
    )
    for field in ("topic", "dlq_topic"):
        assert (
            resolve(setup["environment"][f"UNBIND_{field.upper()}"])
            == ServiceSettings.model_fields[field].default
        )


def test_the_migrations_are_in_the_package() -> None:
    """The image installs the wheel, and `unbind migrate` there needs each service's Alembic
    history: the packages setuptools finds must include every migrations/versions folder."""
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    finder = find_namespace_packages if find.get("namespaces", True) else find_packages
    packages = set(finder(where=str(ROOT), include=find["include"]))
    assert {f"services.{app}.migrations.versions" for app in DATABASE_SERVICES} <= packages


def test_the_agreement_texts_are_in_the_package() -> None:
    """Bindings cite the agreement their customer accepted, and binding serves its text: the image
    must hold every version's files."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "services.binding.agreements"
    ]
    texts = sorted((ROOT / "services" / "binding" / "agreements").glob("*.md"))
    assert len(texts) >= 4 and all(
        any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns) for path in texts
    )


# --------------------------------------------------------------------------- health and order


@pytest.mark.parametrize("app", APPS)
def test_healthcheck_asks_readyz(services: dict[str, Any], app: str) -> None:
    test = services[app]["healthcheck"]["test"]
    # The slim image has no curl or wget: Python asks.
    assert test[:2] == ["CMD", "python"]
    assert f"http://127.0.0.1:{settings_class(app).default_port}/readyz" in test[-1]


def test_depends_on_waits_for_health_or_completion(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert isinstance(rule, dict), f"{name} depends on {target} without a condition"
            if target in JOBS:
                assert rule["condition"] == "service_completed_successfully", f"{name} -> {target}"
            else:
                assert rule["condition"] == "service_healthy", f"{name} -> {target}"
                assert "healthcheck" in services[target], (
                    f"{name} waits for {target} to be healthy, which has no healthcheck"
                )
    for app in APPS:
        assert "kafka-setup" in services[app]["depends_on"], (
            f"{app} may start before its topics, user and ACLs exist"
        )
        if app in DATABASE_SERVICES:
            assert "migrate" in services[app]["depends_on"], (
                f"{app} may start before its database is migrated"
            )
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["kafka-setup"]["depends_on"] == {"kafka": {"condition": "service_healthy"}}


# --------------------------------------------------------------------------- the image


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each a list of (instruction, arguments); continuations joined,
    global ARG defaults substituted in FROM."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = [
        line.strip().split(None, 1)
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    arguments: dict[str, str] = {}
    stages: list[list[tuple[str, str]]] = []
    for keyword, rest in ((parts[0].upper(), parts[1] if len(parts) > 1 else "") for parts in instructions):
        if keyword == "ARG" and not stages and "=" in rest:
            name, default = rest.split("=", 1)
            arguments[name] = default
        if keyword == "FROM":
            rest = re.sub(r"\$\{(\w+)\}", lambda m: arguments[m[1]], rest)
            stages.append([])
        if stages:
            stages[-1].append((keyword, rest))
    return stages


def test_dockerfile_builds_in_stages_and_runs_as_non_root() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "a build stage and a slim runtime stage"
    final = stages[-1]
    assert final[0][1].split()[0] == "python:3.11-slim"
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users, "the runtime stage sets no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"the runtime stage runs as {users[-1]}"
    exposed = {int(port) for keyword, rest in final if keyword == "EXPOSE" for port in rest.split()}
    assert {settings_class(app).default_port for app in APPS} <= exposed
    # No setting, and so no secret, is baked in beyond where the var dir is.
    baked = {
        word.split("=")[0]
        for keyword, rest in final
        if keyword == "ENV"
        for word in rest.split()
        if "=" in word
    }
    assert not {name for name in baked if name.startswith("UNBIND_")} - {"UNBIND_VAR_DIR"}


# --------------------------------------------------------------------------- the broker's security

BROKER_PROPERTIES = ROOT / "deploy" / "kafka" / "compose.properties"


def broker_config() -> dict[str, str]:
    lines = (line.strip() for line in BROKER_PROPERTIES.read_text().splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_the_broker_authorizes_with_acls_and_has_no_unauthenticated_listener(
    services: dict[str, Any],
) -> None:
    kafka = services["kafka"]
    assert (
        f"./{BROKER_PROPERTIES.relative_to(ROOT)}:/etc/unbind/kafka/server.properties:ro" in kafka["volumes"]
    )
    assert "kafka-storage.sh format" in kafka["command"][0] and "kafka-server-start.sh" in kafka["command"][0]
    config = broker_config()
    assert config["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert config["allow.everyone.if.no.acl.found"] == "false"
    assert config["super.users"] == "User:admin;User:controller"
    protocols = dict(entry.split(":") for entry in config["listener.security.protocol.map"].split(","))
    listeners = dict(
        re.fullmatch(r"(\w+)://(.*)", entry).groups() for entry in config["listeners"].split(",")
    )  # type: ignore[union-attr]
    for name, address in listeners.items():
        assert protocols[name].startswith("SASL_"), f"{name} lets clients in without authenticating"
        if not address.startswith("localhost:"):
            assert protocols[name] == "SASL_SSL", (
                f"{name} ({address}) is reachable from other hosts without TLS"
            )
    # The secrets the config reads are the ones compose mounts, made by `unbind kafka secrets`.
    mounted = {f"/run/secrets/{name}" for name in kafka["secrets"]}
    assert {config["ssl.keystore.location"], config["ssl.truststore.location"]} <= mounted
    assert set(re.findall(r"\$\{env:(\w+)\}", BROKER_PROPERTIES.read_text())) == {
        "KAFKA_ADMIN_PASSWORD",
        "KAFKA_CONTROLLER_PASSWORD",
    }


def test_every_secret_compose_reads_is_made_per_installation_and_git_ignored(
    compose: dict[str, Any], kafka_secrets: Path, keys: InstallationKeys
) -> None:
    read = {Path(name) for service in compose["services"].values() for name in service.get("env_file", [])}
    read |= {Path(secret["file"]) for secret in compose["secrets"].values()}
    assert {path.parent for path in read} == {DEFAULT_OUT, KEYS_OUT}
    kafka_read = {path.name for path in read if path.parent == DEFAULT_OUT}
    assert kafka_read == {path.name for path in kafka_secrets.iterdir()}, (
        "a file compose reads that `unbind kafka secrets` does not write, or the reverse"
    )
    keys_read = {path.name for path in read if path.parent == KEYS_OUT}
    assert keys_read <= {path.name for path in keys.dir.iterdir()}, (
        "a file compose reads that `unbind keys generate` does not write"
    )
    assert "deploy/secrets/" in (ROOT / ".gitignore").read_text().splitlines()
    for path in kafka_secrets.iterdir():
        mode = path.stat().st_mode & 0o777
        assert mode == (0o644 if path.suffix == ".pem" else 0o600), f"{path.name}: {oct(mode)}"
    # Bind-mounted with their host mode into containers running as uid 10001: what compose mounts is
    # readable (inside the 0700 folder, so by no other host user), every other file is 0600.
    for path in keys.dir.iterdir():
        mode = path.stat().st_mode & 0o777
        assert mode == (0o644 if path.name in keys_read else 0o600), f"{path.name}: {oct(mode)}"
    for folder in (kafka_secrets, keys.dir):
        assert folder.stat().st_mode & 0o777 == 0o700
    # The passwords of one installation are all different.
    passwords = [
        line.split("=", 1)[1]
        for path in kafka_secrets.glob("*.env")
        for line in path.read_text().splitlines()
        if "PASSWORD" in line
    ]
    assert len(set(passwords)) == 7, (
        "admin, controller and five services, each its own (the admin's twice: broker.env and admin.env)"
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.kafka
def test_the_compose_broker_lets_in_only_scram_clients_over_tls(kafka_secrets: Path, tmp_path: Path) -> None:
    """deploy/kafka/compose.properties, run as compose runs it (format with the admin's SCRAM
    credentials, then start) on the project's Kafka jars, with files from `unbind kafka secrets`,
    on free loopback ports; a client configured as the services are gets in, none other does."""
    internal, external, controller = _free_port(), _free_port(), _free_port()
    text = BROKER_PROPERTIES.read_text()
    for old, new in {
        "INTERNAL://:19092": f"INTERNAL://127.0.0.1:{internal}",
        "EXTERNAL://:9092": f"EXTERNAL://127.0.0.1:{external}",
        "kafka:19092": f"127.0.0.1:{internal}",
        "127.0.0.1:9092": f"127.0.0.1:{external}",
        "localhost:9093": f"localhost:{controller}",
        "/run/secrets/kafka-broker": str(kafka_secrets / "broker.pem"),
        "/run/secrets/kafka-ca": str(kafka_secrets / "ca.pem"),
        "/var/lib/kafka/data": str(tmp_path / "data"),
    }.items():
        assert old in text, old
        text = text.replace(old, new)
    config = tmp_path / "server.properties"
    config.write_text(text)
    broker_env = dict(line.split("=", 1) for line in (kafka_secrets / "broker.env").read_text().splitlines())
    env = {**os.environ, **broker_env}
    java, libs = kafka.find_java(), kafka.ensure_jars()
    run = [
        java,
        f"-Dlog4j2.configurationFile={kafka.deploy_dir() / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={tmp_path}",
        "-cp",
        f"{libs}/*",
    ]
    scram = f"SCRAM-SHA-512=[name=admin,password={broker_env['KAFKA_ADMIN_PASSWORD']}]"
    format_storage = [
        *run,
        "kafka.tools.StorageTool",
        "format",
        "-t",
        "5L6g3nShT-eMCtK--X86sw",
        "-c",
        str(config),
        "--add-scram",
        scram,
    ]
    formatted = subprocess.run(format_storage, env=env, capture_output=True, timeout=120, check=False)
    assert formatted.returncode == 0, formatted.stderr.decode()[-2000:]
    with open(tmp_path / "broker.out", "wb") as out:
        broker = subprocess.Popen(
            [*run, "-Xmx512m", "kafka.Kafka", str(config)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        asyncio.run(_connect_as_the_services_do(internal, kafka_secrets, broker, tmp_path / "broker.out"))
    finally:
        broker.terminate()
        try:
            broker.wait(30)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait()


async def _connect_as_the_services_do(
    port: int, kafka_secrets: Path, broker: subprocess.Popen[bytes], log: Path
) -> None:
    password = dict(line.split("=", 1) for line in (kafka_secrets / "admin.env").read_text().splitlines())[
        "KAFKA_SASL_PASSWORD"
    ]
    admin = KafkaSecurity("admin", password, "SASL_SSL", cafile=str(kafka_secrets / "ca.pem"))
    cluster = Cluster(f"127.0.0.1:{port}", admin)
    await kafka._wait_for_metadata(
        cluster, 120, alive=lambda: broker.poll() is None, on_death=lambda: log.read_text()[-3000:]
    )
    await kafka.create_topics(cluster, ["unbind.events"])
    # Other ways in are refused: no TLS, no SASL, the wrong password, a CA that did not sign the broker.
    refused = {
        "SASL without TLS": {**admin.client_options(), "security_protocol": "SASL_PLAINTEXT"},
        "TLS without SASL": {
            "security_protocol": "SSL",
            "ssl_context": admin.client_options()["ssl_context"],
        },
        "wrong password": replace(admin, password="a-guess").client_options(),
        "another CA": replace(admin, cafile=None).client_options(),
    }
    for way, options in refused.items():
        client = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap, request_timeout_ms=5000, **options)
        try:
            with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
                async with asyncio.timeout(30):
                    await client.start()
        except BaseException as exc:
            raise AssertionError(f"{way}: let in") from exc
        finally:
            await client.close()
