"""deploy/k8s, checked against the Kubernetes schemas and against the code.

No cluster and no `kubectl` are needed: each phase's kustomization (`setup`, then `apps`) is rendered
here by a small loader that implements exactly the Kustomize fields the manifests use (resources,
components, generators, patches, labels, namespace, images; it refuses any other, so it cannot
silently drift), every document is validated offline with kubernetes-validate (strict: unknown
fields fail), and the manifests are held against the services'
settings classes: ports, probes, every environment key, the keys and secrets each service requires
(mounted from the Secret `unbind-keys`, made afresh by `unbind keys generate`, and loaded here as the
pod would), and the partitions that bound each autoscaler. Where `kubectl` is installed, the loader is
also compared with `kubectl kustomize`.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import AliasChoices, SecretStr
from sqlalchemy.engine import make_url

from shared.keys import SigningKey, service_of_kid
from shared.migrations import SERVICES as CONSUMERS
from shared.settings import RefusedToStart, ServiceSettings
from tests.deploy.keys import key_settings
from tools.keys import InstallationKeys, generate_for_deployment
from tools.services import APPS, settings_class

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
# Where `unbind keys generate --out deploy/k8s/common/keys` writes (git-ignored): the loader reads a
# fresh generation instead, never a real installation's keys.
KEYS = K8S / "common" / "keys"
UNBIND_KEYS = "unbind-keys"
# Applied in this order: the Jobs (topics, migrations), then the services.
PHASES = ("setup", "apps")
# The oldest Kubernetes the manifests claim to support, and the newest schema the pinned tool ships.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
NAMESPACE = "unbind"
# Environment a container may get that is no setting: asyncpg reads the password from it when the
# database URL has none, which keeps the password out of the ConfigMap.
DRIVER_ENV = {"PGPASSWORD"}
# Peak RSS measured under the bench (MiB); a memory limit must leave at least half again on top.
MEASURED_PEAK_MIB = {"dashboard": 135}
MEASURED_PEAK_MIB_DEFAULT = 110

# --------------------------------------------------------------------------- the loader

_SUPPORTED = {
    "apiVersion",
    "kind",
    "namespace",
    "resources",
    "components",
    "secretGenerator",
    "configMapGenerator",
    "generatorOptions",
    "patches",
    "labels",
    "images",
}
_CLUSTER_SCOPED = {"Namespace"}
# How a strategic merge patch merges a list that both the object and the patch have, for the lists the
# manifests patch: item by item, matched on Kubernetes' patchMergeKey; or (None) the patch's list
# replaces the object's, as for every list Kubernetes gives no merge key.
_LIST_MERGE_KEYS = {"containers": "name", "env": "name", "volumes": "name", "envFrom": None, "items": None}
# Where `labels` with includeSelectors also writes, for the kinds the manifests label (Kustomize's
# commonLabels field specs), and whether it adds the field when it is missing; `[]`: each item of a list.
_SELECTORS = {
    "Deployment": (
        ("spec.selector.matchLabels", True),
        ("spec.template.metadata.labels", True),
        ("spec.template.spec.topologySpreadConstraints.[].labelSelector.matchLabels", False),
    ),
    "Service": (("spec.selector", True),),
    "PodDisruptionBudget": (("spec.selector.matchLabels", False),),
    "HorizontalPodAutoscaler": (),
}


def _committed(path: Path) -> Path:
    """A git-ignored file (secrets, a cluster's CA) is replaced by its committed `.example`, so the
    rendering is the same on every machine and never reads real secrets."""
    example = path.with_name(path.name + ".example")
    return example if example.is_file() else path


def _read_env_file(path: Path) -> dict[str, str]:
    """An env file as Kustomize reads it."""
    values = {}
    for line in _committed(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value
    return values


def _source(path: Path, keys: Path) -> Path:
    """The file the loader reads for `path`: the test's own generated keys for one of
    deploy/k8s/common/keys."""
    return keys / path.name if path.resolve().parent == KEYS else _committed(path)


def _generated(kustomization: dict[str, Any], directory: Path, keys: Path) -> list[dict[str, Any]]:
    docs = []
    options = kustomization.get("generatorOptions", {})
    for kind, field in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
        for generator in kustomization.get(field, []):
            assert set(generator) <= {"name", "type", "envs", "literals", "files"}, (
                f"{directory}: {field} uses fields the test's loader does not implement"
            )
            # Hash suffixes rename the object and every reference to it; the loader does not.
            assert options.get("disableNameSuffixHash") is True, (
                f"{directory}: generated names must be stable (generatorOptions.disableNameSuffixHash)"
            )
            data: dict[str, str] = {}
            for env in generator.get("envs", []):
                data.update(_read_env_file(directory / env))
            for literal in generator.get("literals", []):
                key, _, value = literal.partition("=")
                data[key] = value
            for entry in generator.get("files", []):
                key, _, name = entry.rpartition("=")
                data[key or Path(name).name] = _source(directory / name, keys).read_text()
            doc: dict[str, Any] = {"apiVersion": "v1", "kind": kind, "metadata": {"name": generator["name"]}}
            if kind == "Secret":
                doc["type"] = generator.get("type", "Opaque")
                doc["data"] = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
            else:
                doc["data"] = data
            docs.append(doc)
    return docs


def _build(
    directory: Path, keys: Path, including: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """The documents of a kustomization. A Component works, as in Kustomize, on what the kustomization
    that includes it has gathered so far (`including`): it adds its own, then transforms them all."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - _SUPPORTED
    assert not unknown, (
        f"{directory}/kustomization.yaml uses {sorted(unknown)}, which the test's loader does not implement"
    )
    component = kustomization.get("kind") == "Component"
    assert component == (including is not None), (
        f"{directory}: a Component is included by `components`, a Kustomization by `resources`"
    )
    docs = list(including or [])
    for entry in kustomization.get("resources", []):
        path = directory / entry
        docs += (
            _build(path, keys)
            if path.is_dir()
            else [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        )
    for entry in kustomization.get("components", []):
        docs = _build(directory / entry, keys, docs)
    docs += _generated(kustomization, directory, keys)
    # Kustomize's order: patches, then the namespace, the labels and the images.
    for entry in kustomization.get("patches", []):
        _patch(docs, entry, directory)
    for doc in docs:
        if "namespace" in kustomization and doc["kind"] not in _CLUSTER_SCOPED:
            doc["metadata"]["namespace"] = kustomization["namespace"]
        for rule in kustomization.get("labels", []):
            _label(doc, rule)
        for container in _containers(doc):
            _set_image(container, kustomization.get("images", []))
    return docs


def _patch(docs: list[dict[str, Any]], entry: dict[str, Any], directory: Path) -> None:
    """One entry of `patches`: strategic merge patches, each applied to the object of its kind and name
    or to every object of the entry's target; or a JSON patch (RFC 6902), applied to every target.
    allowNameChange: the patch's name becomes the object's."""
    options, target = entry.get("options", {}), entry.get("target")
    fields_known = set(entry) <= {"path", "patch", "target", "options"} and set(options) <= {
        "allowNameChange"
    }
    assert fields_known and set(target or {}) <= {"kind", "name"}, (
        f"{directory}: the test's loader does not implement {entry}"
    )
    text = (directory / entry["path"]).read_text() if "path" in entry else entry["patch"]
    bodies = [body for body in yaml.safe_load_all(text) if body]
    if isinstance(bodies[0], list):
        assert target is not None, f"{directory}: a JSON patch needs a target"
        for doc in _targets(docs, target):
            for operation in bodies[0]:
                _replace(doc, operation)
        return
    for body in bodies:
        body = copy.deepcopy(body)
        kind, name = body.pop("kind"), body["metadata"].pop("name")
        body.pop("apiVersion", None)
        for doc in _targets(docs, target or {"kind": kind, "name": name}):
            if options.get("allowNameChange"):
                doc["metadata"]["name"] = name
            _merge(doc, body, f"{directory}: {doc['kind']} {doc['metadata']['name']}")


def _targets(docs: list[dict[str, Any]], target: dict[str, str]) -> list[dict[str, Any]]:
    found = [
        doc
        for doc in docs
        if target.get("kind", doc["kind"]) == doc["kind"]
        and target.get("name", doc["metadata"]["name"]) == doc["metadata"]["name"]
    ]
    assert found, f"no object for the patch target {target}"
    return found


def _merge(obj: dict[str, Any], patch: dict[str, Any], where: str) -> None:
    """A strategic merge patch as Kustomize applies it: maps merge key by key; a list merged item by item
    (_LIST_MERGE_KEYS) gets the patch's items first, in its order, then the object's other items."""
    for field, value in patch.items():
        assert not field.startswith("$") and value is not None, (
            f"{where}: the test's loader implements no patch directive ({field}: {value})"
        )
        old = obj.get(field)
        if isinstance(old, dict) and isinstance(value, dict):
            _merge(old, value, f"{where}.{field}")
        elif isinstance(old, list) and isinstance(value, list):
            assert field in _LIST_MERGE_KEYS, (
                f"{where}.{field}: the test's loader does not know how Kustomize merges this list"
            )
            key = _LIST_MERGE_KEYS[field]
            if key is None:
                obj[field] = copy.deepcopy(value)
                continue
            olds = {item[key]: item for item in old}
            merged = []
            for item in value:
                if item[key] in olds:
                    _merge(olds[item[key]], item, f"{where}.{field}[{item[key]}]")
                    merged.append(olds.pop(item[key]))
                else:
                    merged.append(copy.deepcopy(item))
            obj[field] = merged + [item for item in old if item[key] in olds]
        else:
            obj[field] = copy.deepcopy(value)


def _replace(doc: dict[str, Any], operation: dict[str, Any]) -> None:
    """A JSON patch operation; the manifests use `replace` only."""
    assert operation.get("op") == "replace" and set(operation) == {"op", "path", "value"}, (
        f"the test's loader implements no {operation}"
    )
    *parents, last = [part.replace("~1", "/").replace("~0", "~") for part in operation["path"].split("/")[1:]]
    node = doc
    for part in parents:
        node = node[int(part) if isinstance(node, list) else part]
    key = int(last) if isinstance(node, list) else last
    assert key in (range(len(node)) if isinstance(node, list) else node), (
        f"{operation['path']}: replace needs a value there"
    )
    node[key] = operation["value"]


def _label(doc: dict[str, Any], rule: dict[str, Any]) -> None:
    """One entry of `labels`: on the object, and with includeSelectors on its selectors and pod template."""
    assert set(rule) <= {"pairs", "includeSelectors"}, f"the test's loader does not implement {rule}"
    doc["metadata"].setdefault("labels", {}).update(rule["pairs"])
    if rule.get("includeSelectors"):
        assert doc["kind"] in _SELECTORS, (
            f"the test's loader does not know where Kustomize labels a {doc['kind']}'s selectors"
        )
        for path, create in _SELECTORS[doc["kind"]]:
            for selector in _fields(doc, path.split("."), create=create):
                selector.update(rule["pairs"])


def _fields(node: Any, path: list[str], *, create: bool) -> list[dict[str, Any]]:
    """The maps at `path` under node (`[]`: in each item of a list), made where missing if `create`."""
    if not path:
        return [node]
    head, *rest = path
    if head == "[]":
        return [found for item in node for found in _fields(item, rest, create=create)]
    if head not in node:
        if not create:
            return []
        node[head] = {}
    return _fields(node[head], rest, create=create)


def _set_image(container: dict[str, Any], images: list[dict[str, str]]) -> None:
    name = re.split(r"[:@]", container["image"], maxsplit=1)[0]
    for rule in images:
        if rule["name"] == name:
            container["image"] = (
                f"{rule.get('newName', name)}:{rule['newTag']}"
                if "newTag" in rule
                else rule.get("newName", name)
            )


def render(directory: Path, keys: Path) -> list[dict[str, Any]]:
    return _build(directory, keys)


def _pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    return (
        doc["spec"]["template"]["spec"]
        if doc["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet")
        else None
    )


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = _pod_spec(doc)
    return [*spec.get("initContainers", []), *spec["containers"]] if spec else []


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> InstallationKeys:
    """What `unbind keys generate --out deploy/k8s/common/keys` writes, made afresh."""
    out = tmp_path_factory.mktemp("k8s") / "keys"
    generate_for_deployment(out)
    return InstallationKeys(out)


@pytest.fixture(scope="module")
def phases(keys: InstallationKeys) -> dict[str, list[dict[str, Any]]]:
    return {phase: render(K8S / phase, keys.dir) for phase in PHASES}


@pytest.fixture(scope="module")
def docs(phases: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every object, once (the shared component is rendered by both phases)."""
    unique: dict[tuple[str, str], dict[str, Any]] = {}
    for phase_docs in phases.values():
        for doc in phase_docs:
            key = (doc["kind"], doc["metadata"]["name"])
            assert unique.setdefault(key, doc) == doc, f"{key} differs between the phases"
    return list(unique.values())


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def _data(doc: dict[str, Any]) -> dict[str, str]:
    if doc["kind"] == "Secret":
        return {
            key: base64.b64decode(value).decode() for key, value in doc.get("data", {}).items()
        } | doc.get("stringData", {})
    return doc.get("data", {})


def _env_names(cls: type[ServiceSettings]) -> set[str]:
    """The environment names a settings class reads: env_prefix + field, or the field's aliases."""
    prefix = cls.model_config.get("env_prefix", "")
    names = set()
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias
        if alias is None:
            names.add(f"{prefix}{field_name}".upper())
        elif isinstance(alias, str):
            names.add(alias.upper())
        elif isinstance(alias, AliasChoices):
            names.update(choice.upper() for choice in alias.choices if isinstance(choice, str))
    return names


def _env_name(cls: type[ServiceSettings], field_name: str) -> str:
    field = cls.model_fields[field_name]
    alias = field.validation_alias
    if isinstance(alias, str):
        return alias.upper()
    if isinstance(alias, AliasChoices):
        return next(choice for choice in alias.choices if isinstance(choice, str)).upper()
    return f"{cls.model_config.get('env_prefix', '')}{field_name}".upper()


def _secret_env_names(cls: type[ServiceSettings]) -> set[str]:
    return {
        _env_name(cls, name)
        for name, field in cls.model_fields.items()
        if field.annotation in (SecretStr, SecretStr | None)
    }


def _our_image() -> str:
    common = yaml.safe_load((K8S / "common" / "kustomization.yaml").read_text())
    rule = next(rule for rule in common["images"] if rule["name"] == "unbind")
    return rule.get("newName", "unbind")


def _workloads(
    docs: list[dict[str, Any]],
) -> Iterator[tuple[dict[str, Any], dict[str, Any], list[type[ServiceSettings]]]]:
    """(workload, container, the settings classes that read its environment) for every container
    that runs the unbind image: a service reads its own class; a Job (`unbind migrate`) loads them all."""
    image = _our_image()
    for doc in docs:
        for container in _containers(doc):
            if container["image"].split(":")[0] != image:
                continue
            if doc["kind"] == "Deployment":
                yield doc, container, [settings_class(doc["metadata"]["name"])]
            else:
                yield doc, container, [settings_class(service) for service in CONSUMERS]


def _environment(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    """{name: (source, value)} of a container, source being "value", "configmap" or "secret"."""
    configmaps, secrets = _by_kind(docs, "ConfigMap"), _by_kind(docs, "Secret")
    env: dict[str, tuple[str, str | None]] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            assert name in configmaps, (
                f"{container['name']}: envFrom names a ConfigMap {name} that is not in the manifests"
            )
            env.update({key: ("configmap", value) for key, value in _data(configmaps[name]).items()})
        else:
            name = source["secretRef"]["name"]
            assert name in secrets, (
                f"{container['name']}: envFrom names a Secret {name} that is not in the manifests"
            )
            env.update({key: ("secret", value) for key, value in _data(secrets[name]).items()})
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = ("value", item["value"])
            continue
        ref = item["valueFrom"]
        kind, store, ref = (
            ("configmap", configmaps, ref["configMapKeyRef"])
            if "configMapKeyRef" in ref
            else ("secret", secrets, ref["secretKeyRef"])
        )
        assert ref["name"] in store, (
            f"{container['name']}: {item['name']} refers to a missing {kind} {ref['name']}"
        )
        data = _data(store[ref["name"]])
        assert ref["key"] in data, (
            f"{container['name']}: {item['name']} refers to a key {ref['key']} that {ref['name']} does not "
            f"have"
        )
        env[item["name"]] = (kind, data[ref["key"]])
    return env


def _quantity(value: str | int) -> float:
    """A Kubernetes quantity: "250m" -> 0.25, "256Mi" -> bytes."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    assert match, f"not a quantity: {value!r}"
    return float(match.group(1)) * units.get(match.group(2), 1)


def _partitions(docs: list[dict[str, Any]]) -> int:
    job = _one(docs, "Job", "unbind-kafka-setup")
    (container,) = _containers(job)
    return int(next(item["value"] for item in container["env"] if item["name"] == "PARTITIONS"))


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("phase", PHASES)
def test_every_document_validates_against_the_kubernetes_schemas(
    phases: dict[str, list[dict[str, Any]]], phase: str, version: str
) -> None:
    assert phases[phase], f"{phase} renders nothing"
    invalid = []
    for doc in phases[phase]:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            # The message and where, not the schema jsonschema would print.
            invalid.append(
                f"{doc['kind']} {doc['metadata']['name']}: {exc.message} at "
                f"{'.'.join(map(str, exc.path)) or 'the top'}"
            )
    assert not invalid, f"invalid for Kubernetes {version}:\n" + "\n".join(invalid)


@pytest.mark.skipif(
    shutil.which("kubectl") is None,
    reason="kubectl is not installed; the loader is checked by the other tests",
)
@pytest.mark.parametrize("phase", PHASES)
def test_the_loader_renders_what_kustomize_renders(
    phases: dict[str, list[dict[str, Any]]], phase: str, tmp_path: Path, keys: InstallationKeys
) -> None:
    copy = tmp_path / "k8s"
    shutil.copytree(
        K8S, copy, ignore=shutil.ignore_patterns("secrets.env", "kafka.env", "kafka-ca.pem", "keys")
    )
    for example in copy.rglob("*.example"):
        shutil.copy(example, example.with_suffix(""))
    shutil.copytree(keys.dir, copy / KEYS.relative_to(K8S))
    out = subprocess.run(
        ["kubectl", "kustomize", str(copy / phase)], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr

    def key(doc: dict[str, Any]) -> tuple[str, str]:
        return doc["kind"], doc["metadata"]["name"]

    def decoded(doc: dict[str, Any]) -> dict[str, Any]:
        # Kustomize wraps a long value's base64 in lines; the loader does not. The data must be the same.
        return {**doc, "data": _data(doc)} if doc["kind"] == "Secret" else doc

    rendered = [decoded(doc) for doc in yaml.safe_load_all(out.stdout) if doc]
    assert sorted(rendered, key=key) == sorted(map(decoded, phases[phase]), key=key)


def test_every_namespaced_object_is_in_the_namespace(docs: list[dict[str, Any]]) -> None:
    _one(docs, "Namespace", NAMESPACE)
    for doc in docs:
        if doc["kind"] not in _CLUSTER_SCOPED:
            assert doc["metadata"].get("namespace") == NAMESPACE, f"{doc['kind']} {doc['metadata']['name']}"


def test_every_service_has_a_deployment_a_service_and_a_disruption_budget(docs: list[dict[str, Any]]) -> None:
    for app in APPS:
        deployment = _one(docs, "Deployment", app)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        service = _one(docs, "Service", app)
        assert service["spec"]["selector"].items() <= labels.items(), (
            f"Service {app} selects no pod of its Deployment"
        )
        pdb = _one(docs, "PodDisruptionBudget", app)
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items(), (
            f"PodDisruptionBudget {app} covers no pod of its Deployment"
        )
    assert set(_by_kind(docs, "Deployment")) == set(APPS), "a Deployment for something that is not a service"


def test_ports_probes_and_command_follow_each_settings_class(docs: list[dict[str, Any]]) -> None:
    for app in APPS:
        port = settings_class(app).default_port
        (container,) = _one(docs, "Deployment", app)["spec"]["template"]["spec"]["containers"]
        named = {item["name"]: item["containerPort"] for item in container["ports"]}
        assert list(named.values()) == [port], f"{app} listens on {port}"
        command = container["command"]
        assert f"services.{app}.main:create_app" in command and "--factory" in command, (
            f"{app} runs another app: {command}"
        )
        assert command[command.index("--port") + 1] == str(port), f"{app}: uvicorn --port is not {port}"
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path, f"{app} {probe} asks {get['path']}"
            assert named.get(get["port"], get["port"]) == port, (
                f"{app} {probe} asks port {get['port']}, not {port}"
            )
        (service_port,) = _one(docs, "Service", app)["spec"]["ports"]
        assert (
            service_port["port"] == port
            and named.get(service_port["targetPort"], service_port["targetPort"]) == port
        )


def test_consumers_autoscale_no_further_than_the_partitions(docs: list[dict[str, Any]]) -> None:
    partitions = _partitions(docs)
    hpas = _by_kind(docs, "HorizontalPodAutoscaler")
    assert set(hpas) == set(CONSUMERS), "an HPA for each consuming service, and only for them"
    for name, hpa in hpas.items():
        spec = hpa["spec"]
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        # Extra consumers in a group get no partition and sit idle.
        assert spec["maxReplicas"] <= partitions, (
            f"{name} scales to {spec['maxReplicas']} but the topic has {partitions} partitions"
        )
        # With maxUnavailable 1 in its PDB, two instances keep one consuming through a drain.
        assert spec.get("minReplicas", 1) >= 2
        assert "replicas" not in _one(docs, "Deployment", name)["spec"], (
            f"{name}: an apply would reset the HPA's count"
        )


def test_the_dashboard_runs_once(docs: list[dict[str, Any]]) -> None:
    deployment = _one(docs, "Deployment", "dashboard")
    # Each instance must read every partition: replicas would share its group and see part of it.
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert "dashboard" not in _by_kind(docs, "HorizontalPodAutoscaler")


def test_the_setup_job_runs_the_setup_script_with_everything_it_reads(docs: list[dict[str, Any]]) -> None:
    job = _one(docs, "Job", "unbind-kafka-setup")
    (container,) = _containers(job)
    script = K8S / "setup" / "kafka-setup.sh"
    assert _data(_one(docs, "ConfigMap", "unbind-kafka-setup"))["kafka-setup.sh"] == script.read_text()
    mount = next(mount for mount in container["volumeMounts"] if mount["name"] == "setup")
    assert container["command"] == ["/bin/bash", mount["mountPath"]]
    env = _environment(docs, container)
    common = _data(_one(docs, "ConfigMap", "unbind-common"))
    for name in ("UNBIND_TOPIC", "UNBIND_DLQ_TOPIC", "KAFKA_BOOTSTRAP_SERVERS", "KAFKA_SSL_CAFILE"):
        assert env[name][1] == common[name], f"the setup Job's {name} is not the services'"
    assert env["KAFKA_SASL_PASSWORD"][0] == "secret" and all(
        env[f"KAFKA_PASSWORD_{app.upper()}"][0] == "secret" for app in APPS
    )
    # The script reads exactly what the Job gives it (and the kafka image's own variables).
    read = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", script.read_text())) - {"KAFKA_PASSWORD_"}
    given = set(env) - {"KAFKA_HEAP_OPTS", "LOG_DIR"}
    assert read == given - {f"KAFKA_PASSWORD_{app.upper()}" for app in APPS}, (
        "the script reads a variable the Job does not set, or the reverse"
    )
    assert _partitions(docs) >= 2


def test_every_environment_key_is_a_setting_the_service_reads(docs: list[dict[str, Any]]) -> None:
    for workload, container, classes in _workloads(docs):
        known = set().union(*(_env_names(cls) for cls in classes)) | DRIVER_ENV
        unknown = set(_environment(docs, container)) - known
        assert not unknown, (
            f"{workload['kind']} {workload['metadata']['name']}: {sorted(unknown)} are read by no settings "
            f"class of it"
        )


def test_every_configmap_and_secret_key_is_a_setting_someone_reads(docs: list[dict[str, Any]]) -> None:
    """A key a container takes whole (envFrom) is a setting; a key it takes by name (valueFrom) may be
    named otherwise (each service's Kafka password is under its principal's name), the variable it
    becomes is checked with the container; a key mounted as a file is a file (only the volume's `items`,
    when it lists them). None is left unused."""
    known = set().union(*(_env_names(settings_class(app)) for app in APPS)) | DRIVER_ENV
    used: set[tuple[str, str]] = set()
    for doc in docs:
        for container in _containers(doc):
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef") or source["secretRef"]
                store = _one(docs, "ConfigMap" if "configMapRef" in source else "Secret", ref["name"])
                for key in _data(store):
                    assert key in known, (
                        f"{store['kind']} {ref['name']}: {key} is no setting, yet {container['name']} takes "
                        f"it whole"
                    )
                    used.add((ref["name"], key))
            for item in container.get("env", []):
                ref = item.get("valueFrom", {})
                ref = ref.get("configMapKeyRef") or ref.get("secretKeyRef")
                if ref:
                    used.add((ref["name"], ref["key"]))
        for volume in (_pod_spec(doc) or {}).get("volumes", []):
            if ref := volume.get("configMap") or volume.get("secret"):
                name = ref.get("name") or ref["secretName"]
                data = _data(_one(docs, "ConfigMap" if "configMap" in volume else "Secret", name))
                listed = [item["key"] for item in ref.get("items", [])]
                assert set(listed) <= set(data), (
                    f"{doc['metadata']['name']} mounts items {sorted(set(listed) - set(data))} that {name} "
                    f"does not have"
                )
                used.update((name, key) for key in listed or data)
    for doc in [*_by_kind(docs, "ConfigMap").values(), *_by_kind(docs, "Secret").values()]:
        for key in _data(doc):
            assert (doc["metadata"]["name"], key) in used, (
                f"{doc['kind']} {doc['metadata']['name']}: {key} reaches no container"
            )


def test_every_service_connects_to_kafka_as_its_own_principal_over_tls(docs: list[dict[str, Any]]) -> None:
    common = _data(_one(docs, "ConfigMap", "unbind-common"))
    assert (
        common["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL" and common["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    )
    cafile = Path(common["KAFKA_SSL_CAFILE"])
    assert cafile.name in _data(_one(docs, "ConfigMap", "unbind-kafka-ca")), (
        "the CA file is not in the ConfigMap"
    )
    passwords = _data(_one(docs, "Secret", "unbind-kafka"))
    assert set(passwords) == {"admin", *APPS}
    for app in APPS:
        deployment = _one(docs, "Deployment", app)
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = {item["name"]: item for item in container["env"]}
        assert env["KAFKA_SASL_USERNAME"]["value"] == app
        assert env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "unbind-kafka",
            "key": app,
        }, f"{app} reads another principal's password"
        mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
        volumes = {volume["name"]: volume for volume in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes[mounts[str(cafile.parent)]]["configMap"]["name"] == "unbind-kafka-ca", (
            f"{app} has no CA at {cafile}"
        )


def _mounted_files(
    docs: list[dict[str, Any]], doc: dict[str, Any], container: dict[str, Any], root: Path
) -> dict[str, Path]:
    """{path in the container: a file under root with its content} of every Secret and ConfigMap item the
    container mounts, as the kubelet would write them (only `items` when the volume lists them)."""
    volumes = {volume["name"]: volume for volume in _pod_spec(doc)["volumes"]}
    files = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        ref = volume.get("secret") or volume.get("configMap")
        if ref is None:
            continue
        data = _data(
            _one(
                docs,
                "Secret" if "secret" in volume else "ConfigMap",
                ref.get("secretName") or ref.get("name"),
            )
        )
        for key, path in [(item["key"], item["path"]) for item in ref.get("items", [])] or [
            (key, key) for key in data
        ]:
            inside = f"{mount['mountPath']}/{path}"
            files[inside] = root / inside.lstrip("/")
            files[inside].parent.mkdir(parents=True, exist_ok=True)
            files[inside].write_text(data[key])
    return files


def _pod_environment(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, tuple[str, str | None]], files: dict[str, Path]
) -> None:
    """The process environment of the container alone: strong values for what comes from a Secret (the
    committed examples hold placeholders), a mounted file's path where the pod names one."""
    for name in [
        name
        for name in os.environ
        if name.upper().startswith(("UNBIND_", "KAFKA_")) or name.upper() in DRIVER_ENV
    ]:
        monkeypatch.delenv(name)
    for name, (source, value) in env.items():
        monkeypatch.setenv(name, "s" * 48 if source == "secret" else str(files.get(str(value), value)))


def test_secrets_come_from_secrets_and_each_service_starts_in_production_with_its_keys(
    docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, keys: InstallationKeys
) -> None:
    """Every pod, its environment and mounts rendered: production, its own database, and every key and
    secret its settings class requires loads from what the Secret unbind-keys mounts; `unbind migrate`
    needs none and gets none."""
    for workload, container, classes in _workloads(docs):
        env = _environment(docs, container)
        where = f"{workload['kind']} {workload['metadata']['name']}"
        files = _mounted_files(docs, workload, container, tmp_path / workload["metadata"]["name"])
        for cls in classes:
            secret_names = _secret_env_names(cls) | DRIVER_ENV
            for name, (source, _) in env.items():
                if name in secret_names:
                    assert source == "secret", f"{where}: {name} is a secret but comes from a {source}"
            _pod_environment(monkeypatch, env, files)
            settings = cls()
            assert settings.env == "production", f"{where}: UNBIND_ENV is not production"
            if cls.service_name in CONSUMERS:
                url = make_url(settings.database_url)
                assert (
                    url.get_backend_name() == "postgresql" and url.database == f"unbind_{cls.service_name}"
                ), f"{where}: {cls.service_name} would not use its PostgreSQL database"
            if workload["kind"] != "Deployment":
                given = sorted(
                    name
                    for name in env
                    if "JWKS" in name
                    or "SIGNING" in name
                    or name.endswith("_FILE")
                    or name in _secret_env_names(cls)
                )
                assert not given and not [path for path in files if UNBIND_KEYS in path], (
                    f"{where} needs no key, yet is given {given}"
                )
                continue
            loaded = settings.load_keys()
            assert (loaded.signing is not None) == cls.needs_signing_key
            if loaded.signing is not None:
                assert service_of_kid(loaded.signing.kid) == cls.service_name
            for name in cls.required_secrets:
                assert getattr(settings, name).get_secret_value() == keys.secret(name), (
                    f"{where}: {name} is not the generated one"
                )
    for configmap in _by_kind(docs, "ConfigMap").values():
        url = _data(configmap).get("UNBIND_DATABASE_SERVER_URL")
        if url:
            assert make_url(url).password is None, "a database password in a ConfigMap"


def test_without_its_keys_a_service_refuses_to_start(
    docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No fallback: with the Secret's files absent, or any one key setting left out, production refuses."""
    for app in APPS:
        deployment = _one(docs, "Deployment", app)
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env, cls = _environment(docs, container), settings_class(app)
        _pod_environment(monkeypatch, env, {})
        with pytest.raises(RefusedToStart):
            cls().load_keys()
        files = _mounted_files(docs, deployment, container, tmp_path / app)
        for variable in key_settings(cls):
            _pod_environment(
                monkeypatch, {name: value for name, value in env.items() if name != variable}, files
            )
            with pytest.raises(RefusedToStart, match=variable.removesuffix("_FILE")):
                cls().load_keys()


def test_each_service_mounts_its_own_keys_and_no_other(
    docs: list[dict[str, Any]], keys: InstallationKeys
) -> None:
    """Each Deployment mounts, of the Secret unbind-keys, exactly the items its key settings read: the
    JWKS, its own key if it signs, its own secrets; readable by its group (fsGroup), by no other user."""
    stored = _data(_one(docs, "Secret", UNBIND_KEYS))
    for app in APPS:
        cls = settings_class(app)
        spec = _one(docs, "Deployment", app)["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        secret_mounts = [
            (mount, volumes[mount["name"]]["secret"])
            for mount in container["volumeMounts"]
            if "secret" in volumes[mount["name"]]
        ]
        assert len(secret_mounts) == 1, f"{app} mounts {len(secret_mounts)} Secrets"
        ((mount, secret),) = secret_mounts
        assert (
            secret["secretName"] == UNBIND_KEYS and mount.get("readOnly") is True and "subPath" not in mount
        )
        assert secret["defaultMode"] == 0o440 and not [item for item in secret["items"] if "mode" in item], (
            f"{app}: the key files are 0440"
        )
        assert spec["securityContext"]["fsGroup"] == spec["securityContext"]["runAsGroup"], (
            f"{app}: the pod's user cannot read its 0440 keys"
        )
        mounted = {f"{mount['mountPath']}/{item['path']}": item["key"] for item in secret["items"]}
        env = {
            name: value
            for name, (source, value) in _environment(docs, container).items()
            if source == "value"
        }
        assert {name for name, value in env.items() if value in mounted} == set(key_settings(cls)), (
            f"{app}: its key settings and its mounts differ"
        )
        assert {env[name] for name in key_settings(cls)} == set(mounted), (
            f"{app} mounts a file no setting of it reads"
        )
        assert not [
            jwk for jwk in json.loads(stored[mounted[env["UNBIND_JWKS_FILE"]]])["keys"] if "d" in jwk
        ], "the JWKS holds a private key"
        if cls.needs_signing_key:
            own = SigningKey.from_jwk(json.loads(stored[mounted[env["UNBIND_SIGNING_KEY_FILE"]]]))
            assert own.kid == keys.service_key(app).kid, f"{app} mounts another's key"
        for name in cls.required_secrets:
            assert stored[mounted[env[f"UNBIND_{name.upper()}_FILE"]]] == keys.secret(name)


def test_no_pod_can_get_the_issuer_s_or_the_customer_system_s_key(
    docs: list[dict[str, Any]], keys: InstallationKeys
) -> None:
    """The Secret holds the JWKS, the signing services' keys and the services' secrets, nothing more: the
    keys that sign customer, ops and customer-system tokens are in no Secret, so no pod can mount them."""
    signing = [app for app in APPS if settings_class(app).needs_signing_key]
    secrets = sorted({name for app in APPS for name in settings_class(app).required_secrets})
    wanted = {
        keys.jwks_file,
        *(keys.service_key_file(app) for app in signing),
        *(keys.secret_file(name) for name in secrets),
    }
    assert _data(_one(docs, "Secret", UNBIND_KEYS)) == {path.name: path.read_text() for path in wanted}
    private_kids = set()
    for secret in _by_kind(docs, "Secret").values():
        for value in _data(secret).values():
            try:
                private_kids.add(SigningKey.from_jwk(json.loads(value)).kid)
            except ValueError:
                continue  # not a private JWK
    assert {service_of_kid(kid) for kid in private_kids} == set(signing)
    assert private_kids.isdisjoint({keys.issuer().kid, keys.service_key("customer-system").kid})


def test_the_secrets_are_generated_from_git_ignored_files(
    docs: list[dict[str, Any]], keys: InstallationKeys
) -> None:
    """Env files have a committed example; the key files are those `unbind keys generate` writes, in a
    git-ignored folder. No key or secret of a service is typed into an env file."""
    common = yaml.safe_load((K8S / "common" / "kustomization.yaml").read_text())
    ignored = {line.strip() for line in (ROOT / ".gitignore").read_text().splitlines()}
    for generator in common["secretGenerator"]:
        for env in generator.get("envs", []):
            path = K8S / "common" / env
            assert str(path.relative_to(ROOT)) in ignored, f"{path} is not git-ignored"
            assert path.with_name(path.name + ".example").is_file(), f"{path}.example is missing"
        for entry in generator.get("files", []):
            path = K8S / "common" / entry
            assert path.parent == KEYS and f"{KEYS.relative_to(ROOT)}/" in ignored, (
                f"{path} is not in the git-ignored {KEYS}"
            )
            assert (keys.dir / path.name).is_file(), f"`unbind keys generate` writes no {path.name}"
    typed = set(_read_env_file(K8S / "common" / "secrets.env"))
    assert typed <= DRIVER_ENV, (
        f"secrets.env.example types {sorted(typed - DRIVER_ENV)}: keys and secrets are generated"
    )


def test_every_container_has_requests_and_limits(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        for container in _containers(doc):
            where = f"{doc['kind']} {doc['metadata']['name']} {container['name']}"
            resources = container.get("resources", {})
            for resource in ("cpu", "memory"):
                request, limit = (
                    resources.get("requests", {}).get(resource),
                    resources.get("limits", {}).get(resource),
                )
                assert request and limit, f"{where}: no {resource} request and limit"
                assert _quantity(request) <= _quantity(limit), f"{where}: {resource} request above the limit"
    for app in APPS:
        (container,) = _one(docs, "Deployment", app)["spec"]["template"]["spec"]["containers"]
        peak = MEASURED_PEAK_MIB.get(app, MEASURED_PEAK_MIB_DEFAULT) * 2**20
        assert _quantity(container["resources"]["limits"]["memory"]) >= 1.5 * peak, (
            f"{app}: the memory limit leaves too little above the measured peak"
        )


def test_every_pod_runs_as_non_root_with_nothing_to_escalate(docs: list[dict[str, Any]]) -> None:
    var_dir = _data(_one(docs, "ConfigMap", "unbind-common"))["UNBIND_VAR_DIR"]
    our_containers = {id(container) for _, container, _ in _workloads(docs)}
    for doc in docs:
        spec = _pod_spec(doc)
        if spec is None:
            continue
        assert spec["securityContext"]["runAsNonRoot"] is True, (
            f"{doc['kind']} {doc['metadata']['name']}: runAsNonRoot"
        )
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec.get("automountServiceAccountToken") is False, "no pod talks to the API server"
        empty_dirs = {volume["name"] for volume in spec.get("volumes", []) if "emptyDir" in volume}
        for container in _containers(doc):
            where = f"{doc['kind']} {doc['metadata']['name']} {container['name']}"
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"] and not context["capabilities"].get("add"), (
                where
            )
            assert context["readOnlyRootFilesystem"] is True, where
            mounts = {mount["mountPath"]: mount["name"] for mount in container.get("volumeMounts", [])}
            assert mounts.get("/tmp") in empty_dirs, f"{where}: /tmp is not writable"
            if id(container) in our_containers:
                assert mounts.get(var_dir) in empty_dirs, f"{where}: the var dir {var_dir} is not writable"
