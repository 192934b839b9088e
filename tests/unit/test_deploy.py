"""Static checks of the container and cluster files in deploy/ (no Docker engine or cluster needed).

They parse every YAML file, check the probes, resources and security settings the engine relies on, and
check that every DOCLOOP_ variable the files set is a real setting and every command they run exists.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.cli import build_parser, cmd_db_upgrade, cmd_serve
from engine.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

HTTP_PORT = 8080
TOPIC_FIELDS = (
    "topic_claims_denied",
    "topic_notes_signed",
    "topic_acks",
    "topic_notifications",
    "topic_escalations",
    "topic_dlq",
)
# Every file whose DOCLOOP_ names must be settings of the engine.
MANIFESTS = sorted([*K8S.glob("*.yaml"), COMPOSE, DOCKERFILE])


def yaml_files() -> list[Path]:
    return sorted([*K8S.glob("*.yaml"), *K8S.glob("*.yml"), COMPOSE])


def load_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def k8s_objects() -> list[dict[str, Any]]:
    objects = []
    for path in sorted(K8S.glob("*.yaml")):
        objects += [doc for doc in load_all(path) if doc.get("kind") != "Kustomization"]
    return objects


def one(kind: str, component: str | None = None) -> dict[str, Any]:
    found = [
        obj
        for obj in k8s_objects()
        if obj["kind"] == kind
        and (component is None or obj["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component)
    ]
    assert len(found) == 1, f"expected one {kind} ({component}), found {len(found)}"
    return found[0]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def container_argv(container: dict[str, Any]) -> list[str]:
    """What the container runs: command (or the image's ENTRYPOINT, docloop) followed by args."""
    return [*container.get("command", ["docloop"]), *container.get("args", [])]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        joined.append(pending + stripped)
        pending = ""
    assert not pending, "Dockerfile ends inside a continuation line"
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1] if " " in text else "") for text in joined]


def expected_env_names() -> set[str]:
    prefix = str(Settings.model_config.get("env_prefix", ""))
    assert prefix == "DOCLOOP_"
    return {f"{prefix}{name.upper()}" for name in Settings.model_fields}


# ---- every file parses --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_parses(path: Path) -> None:
    documents = load_all(path)
    assert documents, f"{path} is empty"
    for document in documents:
        assert isinstance(document, dict)


def test_the_expected_files_exist() -> None:
    for name in ("kustomization.yaml", "configmap.yaml", "secret.example.yaml", "migrate-job.yaml"):
        assert (K8S / name).is_file(), name
    for path in (COMPOSE, DOCKERFILE, DOCKERIGNORE, DEPLOY / "README.md"):
        assert path.is_file(), path


# ---- Kubernetes ---------------------------------------------------------------------------------------


def test_every_k8s_object_is_namespace_agnostic_and_well_formed() -> None:
    objects = k8s_objects()
    assert {obj["kind"] for obj in objects} >= {
        "ConfigMap",
        "Secret",
        "Job",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
    }
    for obj in objects:
        assert obj.get("apiVersion") and obj.get("metadata", {}).get("name"), obj
        assert "namespace" not in obj["metadata"], f"{obj['kind']} names a namespace"


def test_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    kustomization = load_all(K8S / "kustomization.yaml")[0]
    assert kustomization["kind"] == "Kustomization"
    assert "namespace" not in kustomization
    resources = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert resources == on_disk
    assert "secret.example.yaml" not in resources  # applying must never overwrite real credentials


def test_deployment_probes_resources_and_security() -> None:
    deployment = one("Deployment")
    assert deployment["spec"]["replicas"] == 2
    spec = pod_spec(deployment)
    assert spec["terminationGracePeriodSeconds"] >= 90  # SIGTERM drains the batch in hand
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001
    (container,) = spec["containers"]
    assert container_argv(container) == ["docloop", "serve"]

    ports = {port.get("name"): port["containerPort"] for port in container["ports"]}
    assert HTTP_PORT in ports.values()

    def probe_port(probe: dict[str, Any]) -> int:
        port = probe["httpGet"]["port"]
        return ports[port] if isinstance(port, str) else int(port)

    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert probe_port(container["readinessProbe"]) == HTTP_PORT
    assert probe_port(container["livenessProbe"]) == HTTP_PORT

    resources = container["resources"]
    assert resources["requests"] == {"cpu": "250m", "memory": "384Mi"}
    assert resources["limits"] == {"cpu": "1", "memory": "512Mi"}

    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_deployment_reads_secrets_from_the_secret_and_the_sasl_password_from_a_file() -> None:
    deployment = one("Deployment")
    spec = pod_spec(deployment)
    (container,) = spec["containers"]
    secret = one("Secret")
    secret_name = secret["metadata"]["name"]
    secret_keys = set(secret["stringData"])
    env = {item["name"]: item for item in container.get("env", [])}
    for name in ("DOCLOOP_DATABASE_URL", "DOCLOOP_PHI_HASH_KEY"):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret_name and ref["key"] in secret_keys
    config = one("ConfigMap")
    assert {"configMapRef": {"name": config["metadata"]["name"]}} in container["envFrom"]
    assert not {"DOCLOOP_DATABASE_URL", "DOCLOOP_PHI_HASH_KEY"} & set(config["data"])

    password_file = Path(config["data"]["DOCLOOP_KAFKA_SASL_PASSWORD_FILE"])
    mount = next(m for m in container["volumeMounts"] if password_file.parent == Path(m["mountPath"]))
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == secret_name
    paths = {item["path"]: item["key"] for item in volume["secret"]["items"]}
    assert paths[password_file.name] in secret_keys


def test_migration_job_runs_db_upgrade_as_non_root() -> None:
    job = one("Job")
    spec = pod_spec(job)
    assert spec["restartPolicy"] in {"Never", "OnFailure"}
    assert spec["securityContext"]["runAsNonRoot"] is True
    (container,) = spec["containers"]
    assert container_argv(container) == ["docloop", "db", "upgrade"]
    assert "DOCLOOP_DATABASE_URL" in {item["name"] for item in container["env"]}


def test_service_exposes_the_http_port_for_prometheus() -> None:
    service = one("Service")
    assert [port["port"] for port in service["spec"]["ports"]] == [HTTP_PORT]
    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(HTTP_PORT)
    assert annotations["prometheus.io/path"] == "/metrics"
    labels = pod_spec_labels(one("Deployment"))
    assert service["spec"]["selector"].items() <= labels.items()


def pod_spec_labels(deployment: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def test_pod_disruption_budget_keeps_one_engine() -> None:
    pdb = one("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_spec_labels(one("Deployment")).items()


# ---- docker compose -----------------------------------------------------------------------------------


def test_compose_services_and_commands() -> None:
    services = compose()["services"]
    assert set(services) >= {"kafka", "postgres", "topics", "migrate", "engine"}
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "broker,controller" in str(services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"])
    assert services["postgres"]["image"] == "postgres:16"
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["engine"]["command"] == ["serve"]
    for name in ("migrate", "engine"):
        assert services[name]["build"]["dockerfile"] == "deploy/docker/Dockerfile"
    for name in ("kafka", "postgres", "engine"):
        assert "test" in services[name]["healthcheck"], f"{name} has no healthcheck"

    engine_needs = {name: dep["condition"] for name, dep in services["engine"]["depends_on"].items()}
    assert engine_needs == {
        "kafka": "service_healthy",
        "postgres": "service_healthy",
        "topics": "service_completed_successfully",
        "migrate": "service_completed_successfully",
    }
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_compose_creates_the_six_default_topics_with_six_partitions() -> None:
    topics = compose()["services"]["topics"]
    script = " ".join([*topics.get("entrypoint", []), *topics["command"]])
    assert "kafka-topics.sh" in script and "--create" in script
    assert re.search(r"--partitions 6\b", script)
    defaults = {str(Settings.model_fields[name].default) for name in TOPIC_FIELDS}
    assert len(defaults) == 6
    words = set(re.findall(r"[\w.]+", script))
    for topic in defaults:
        assert topic in words, topic


def test_compose_engine_settings() -> None:
    env = compose()["services"]["engine"]["environment"]
    assert env["DOCLOOP_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert env["DOCLOOP_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert env["DOCLOOP_DATABASE_URL"] == compose()["services"]["migrate"]["environment"]["DOCLOOP_DATABASE_URL"]
    assert int(env["DOCLOOP_TOPIC_PARTITIONS"]) == 6


# ---- Dockerfile ---------------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_slim_and_non_root() -> None:
    instructions = dockerfile_instructions()
    args = {
        text.split("=", 1)[0]: text.split("=", 1)[1] for kind, text in instructions if kind == "ARG" and "=" in text
    }
    stages = [
        text.replace("${PYTHON_IMAGE}", args.get("PYTHON_IMAGE", "")) for kind, text in instructions if kind == "FROM"
    ]
    assert len(stages) >= 2
    assert all(stage.startswith("python:3.11-slim") for stage in stages), stages

    users = [text for kind, text in instructions if kind == "USER"]
    assert users, "no USER"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) == 10001  # numeric, so runAsNonRoot can verify it

    last = dict(instructions)  # the last of each instruction is the one that counts
    assert json.loads(last["ENTRYPOINT"]) == ["docloop"]
    assert json.loads(last["CMD"]) == ["serve"]
    assert str(HTTP_PORT) in last["EXPOSE"].split()
    assert "/healthz" in last["HEALTHCHECK"] and "urllib" in last["HEALTHCHECK"]


def test_dockerfile_ships_migrations_next_to_the_engine_and_no_tests_or_dev_deps() -> None:
    instructions = dockerfile_instructions()
    copies = [text for kind, text in instructions if kind == "COPY"]
    sources = " ".join(copies)
    for needed in ("engine", "schemas", "migrations", "alembic.ini", "pyproject.toml"):
        assert needed in sources, needed
    assert "tests" not in sources
    runs = " ".join(text for kind, text in instructions if kind == "RUN")
    assert "[dev]" not in runs and "pytest" not in runs

    ignored = [line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()]
    assert "*" in ignored  # an allow-list: only what is named below it goes into the build context
    allowed = {line[1:].rstrip("/") for line in ignored if line.startswith("!")}
    assert {"engine", "schemas", "migrations", "alembic.ini", "pyproject.toml"} <= allowed
    assert not {"tests", "deploy", ".git", ".venv"} & allowed


# ---- names and commands exist in the engine -----------------------------------------------------------


def test_every_docloop_variable_in_the_manifests_is_a_setting() -> None:
    expected = expected_env_names()
    named: dict[str, set[str]] = {}
    for path in MANIFESTS:
        for name in re.findall(r"\bDOCLOOP_[A-Z0-9_]+\b", path.read_text(encoding="utf-8")):
            named.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    assert len(named) >= 10, "the scan found too few names to be looking at the right files"
    unknown = {name: sorted(files) for name, files in named.items() if name not in expected}
    assert unknown == {}, f"not fields of engine.settings.Settings: {unknown}"


def test_the_entry_commands_exist_in_the_cli() -> None:
    parser = build_parser()
    assert parser.parse_args(["serve"]).func is cmd_serve
    assert parser.parse_args(["db", "upgrade"]).func is cmd_db_upgrade
