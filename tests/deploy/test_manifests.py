"""The deployment artefacts under deploy/, checked offline: every manifest parses, the
containers run as non-root on a read-only root filesystem with probes on the broker's
health routes, no secret is written inline, and the systemd units are hardened.

Nothing here downloads or builds: there is no Docker engine, so the Dockerfile is read
statically; ``kubectl kustomize`` renders the overlay only where it is on the PATH.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SECRET_NAME = re.compile(
    r"PASSPHRASE|PASSWORD|TOKEN|SECRET(?!S_DIR)|REDIS_URL|_KEY$", re.IGNORECASE
)
BROKER_ROUTES = {"/healthz", "/readyz"}


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _k8s_objects() -> list[dict[str, Any]]:
    objects = []
    for path in sorted((DEPLOY / "k8s").rglob("*.yaml")):
        for doc in _documents(path):
            if isinstance(doc, dict) and "kind" in doc and "apiVersion" in doc:
                objects.append(doc)
    return objects


def _by_kind(kind: str) -> list[dict[str, Any]]:
    return [o for o in _k8s_objects() if o["kind"] == kind]


def test_every_yaml_manifest_parses():
    paths = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))
    assert len(paths) >= 10
    for path in paths:
        assert _documents(path), path


def test_the_broker_deployment_is_probed_non_root_and_read_only():
    (deployment,) = [d for d in _by_kind("Deployment") if d["metadata"]["name"] == "tessera-broker"
                     and "selector" in d["spec"]]  # fmt: skip
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"] + pod.get("initContainers", []):
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert {"requests", "limits"} <= container["resources"].keys()
    (broker,) = pod["containers"]
    assert broker["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert broker["livenessProbe"]["httpGet"]["path"] in BROKER_ROUTES
    assert deployment["spec"]["replicas"] >= 2
    assert broker["args"] == ["serve", "--workers", "2"]  # no link worker in an API process


def test_the_link_workers_run_apart_non_root_and_read_only_without_a_service():
    (workers,) = [
        d for d in _by_kind("Deployment") if d["metadata"]["name"] == "tessera-link-worker"
    ]
    pod = workers["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["args"] == ["link-worker"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"requests", "limits"} <= container["resources"].keys()
    # Its one port is the health port: /healthz for the probes, /metrics for Prometheus.
    (port,) = container["ports"]
    assert port["name"] == "health"
    env = {v["name"]: v.get("value") for v in container["env"]}
    assert env["TESSERA_BROKER_LINK_WORKER_HEALTH_PORT"] == str(port["containerPort"])
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}, probe
    annotations = workers["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port["containerPort"])
    labels = workers["spec"]["template"]["metadata"]["labels"]
    assert labels["tessera-redis-client"] == "true"  # the chart's policy admits it to Redis
    for selector in [s["spec"]["selector"] for s in _by_kind("Service")]:
        assert not selector.items() <= labels.items(), "no Service may reach a link worker"
    assert workers["spec"]["replicas"] >= 2


def test_every_deployment_has_liveness_and_readiness_probes_on_a_port_it_declares():
    deployments = [d for d in _by_kind("Deployment") if "selector" in d["spec"]]
    assert len(deployments) == 2
    for deployment in deployments:
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            ports = {p["name"] for p in container.get("ports", [])}
            for probe in ("livenessProbe", "readinessProbe"):
                assert container[probe]["httpGet"]["path"] in BROKER_ROUTES, probe
                assert container[probe]["httpGet"]["port"] in ports, probe


def test_prometheus_scrapes_the_link_workers_with_the_token_from_a_file():
    config = _documents(DEPLOY / "prometheus" / "prometheus.yml")[0]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    workers = [job for name, job in jobs.items() if name.startswith("tessera-link-worker")]
    assert workers
    for job in workers:
        assert set(job["authorization"]) == {"type", "credentials_file"}
    ports = [c["port"] for job in workers for c in job.get("dns_sd_configs", [])]
    compose = _documents(DEPLOY / "compose" / "compose.yaml")[0]
    health = compose["services"]["link-worker"]["environment"]
    assert ports == [int(health["TESSERA_BROKER_LINK_WORKER_HEALTH_PORT"])]


def test_no_secret_is_inline_anywhere():
    assert not _by_kind("Secret"), "secrets are created by the operator and only referenced"
    for obj in _by_kind("Deployment"):
        for container in obj["spec"]["template"]["spec"].get("containers", []):
            for variable in container.get("env", []):
                if "value" in variable:
                    assert not SECRET_NAME.search(variable["name"]), variable
    compose = _documents(DEPLOY / "compose" / "compose.yaml")[0]
    for service in compose["services"].values():
        environment = service.get("environment", {}) or {}
        for name in environment:
            assert not SECRET_NAME.search(name), name
    for secret in compose["secrets"].values():
        assert set(secret) == {"file"} and secret["file"].startswith("./secrets/")
    ignored = (DEPLOY / "compose" / ".gitignore").read_text().split()
    assert "secrets/" in ignored


def test_the_deployments_mount_every_secret_they_reference():
    deployments = [d for d in _by_kind("Deployment") if "selector" in d["spec"]]
    assert len(deployments) == 2
    for deployment in deployments:
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        files = {
            item["path"] for v in volumes if "secret" in v for item in v["secret"].get("items", [])
        }
        assert {"tessera_broker_keystore_passphrase", "tessera_broker_redis_url"} <= files


def test_network_policies_admit_only_the_api_and_only_brokers_to_redis():
    policies = {p["metadata"]["name"]: p["spec"] for p in _by_kind("NetworkPolicy")}
    deny = policies["default-deny"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    redis = policies["tessera-redis"]
    (rule,) = redis["ingress"]
    assert rule["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "tessera-broker"}}}
    ]
    assert rule["ports"] == [{"port": 6379, "protocol": "TCP"}]
    broker = policies["tessera-broker"]
    assert [p["port"] for r in broker["ingress"] for p in r["ports"]] == [8470]
    health = policies["tessera-link-worker-health"]
    assert health["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "link-worker"
    (rule,) = health["ingress"]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    assert rule["ports"] == [{"port": 9470, "protocol": "TCP"}]
    selected = {name for name, spec in policies.items() if spec["podSelector"]}
    assert selected == {"tessera-broker", "tessera-link-worker-health", "tessera-redis"}


def test_ingress_terminates_tls_and_a_disruption_budget_keeps_one_api():
    (ingress,) = _by_kind("Ingress")
    tls_hosts = {h for t in ingress["spec"]["tls"] for h in t["hosts"]}
    assert {r["host"] for r in ingress["spec"]["rules"]} <= tls_hosts
    assert all(t["secretName"] for t in ingress["spec"]["tls"])
    (budget,) = _by_kind("PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] >= 1


def test_redis_comes_from_the_bitnami_chart_with_aof():
    values = _documents(DEPLOY / "k8s" / "redis" / "values.yaml")[0]
    assert values["auth"]["existingSecret"] and "password" not in values["auth"]
    assert "appendonly yes" in values["commonConfiguration"]
    assert (
        values["networkPolicy"]["enabled"] is True
        and values["networkPolicy"]["allowExternal"] is False
    )
    assert not _by_kind("StatefulSet"), "Redis is the chart's, not a hand-written StatefulSet"
    assert "bitnamicharts/redis" in (DEPLOY / "k8s" / "redis" / "values.yaml").read_text()


def test_compose_runs_two_read_only_api_processes_behind_a_tls_proxy():
    compose = _documents(DEPLOY / "compose" / "compose.yaml")[0]
    services = compose["services"]
    brokers = [s for s in services.values() if s.get("command") == ["serve", "--workers", "2"]]
    assert len(brokers) == 2
    (worker,) = [s for s in services.values() if s.get("command") == ["link-worker"]]
    assert "ports" not in worker  # the health port stays on the internal network
    port = worker["environment"]["TESSERA_BROKER_LINK_WORKER_HEALTH_PORT"]
    assert f"127.0.0.1:{port}/healthz" in " ".join(worker["healthcheck"]["test"])
    assert "tessera_broker_metrics_token" in worker["secrets"]
    for service in services.values():
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
    for broker in brokers:
        assert broker["user"].split(":")[0] not in ("0", "root")
        assert "/readyz" in " ".join(broker["healthcheck"]["test"])
    assert compose["networks"]["backend"]["internal"] is True
    assert [s for s in services if "ports" in services[s]] == ["proxy"]
    assert "appendonly yes" in (DEPLOY / "compose" / "redis.conf.example").read_text()
    caddy = (DEPLOY / "compose" / "Caddyfile").read_text()
    assert "tls /run/secrets/" in caddy and "broker-a:8470 broker-b:8470" in caddy


def _dockerfile_stages(text: str) -> list[list[str]]:
    joined = re.sub(r"\\\n", " ", text)
    stages: list[list[str]] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_the_dockerfile_builds_the_wheel_and_runs_non_root_with_a_healthcheck():
    build, runtime = _dockerfile_stages((DEPLOY / "Dockerfile").read_text())
    assert any("pip wheel" in line and "'.[broker]'" in line for line in build)
    assert any(line.startswith("COPY --from=build /wheels") for line in runtime)
    assert any("--no-index" in line for line in runtime), "the runtime stage installs offline"
    users = [line.split()[1] for line in runtime if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    (health,) = [line for line in runtime if line.startswith("HEALTHCHECK")]
    assert "/readyz" in health
    assert not any("build-essential" in line for line in runtime)
    assert runtime[-2:] == ['ENTRYPOINT ["tessera-broker"]', 'CMD ["serve"]']
    copied = {
        line.split()[1] for line in build if line.startswith("COPY ") and "--from" not in line
    }
    for source in copied:
        assert (ROOT / source).exists(), source


def _unit(path: Path) -> dict[str, list[str]]:
    entries: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            entries.setdefault(key.strip(), []).append(value.strip())
    return entries


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("tessera-broker.service", "tessera-broker serve"),
        ("tessera-broker@.service", "tessera-broker serve --workers 2"),
        ("tessera-link-worker.service", "tessera-broker link-worker"),
    ],
)
def test_the_systemd_units_are_hardened_and_take_secrets_as_credentials(name, command):
    unit = _unit(DEPLOY / "systemd" / name)
    for setting, value in {
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
        "PrivateTmp": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": "",
        "RestrictSUIDSGID": "yes", "UMask": "0077",
    }.items():  # fmt: skip
        assert unit[setting] == [value], setting
    assert unit["User"] == ["tessera"]
    assert unit["ExecStart"][0].endswith(command)
    assert "TESSERA_BROKER_SECRETS_DIR=%d" in unit["Environment"]
    for assignment in unit["Environment"]:
        variable = assignment.split("=", 1)[0]
        assert not SECRET_NAME.search(variable) or assignment.endswith(".pem"), assignment
    credentials = {c.split(":", 1)[0] for c in unit["LoadCredential"]}
    assert "tessera_broker_keystore_passphrase" in credentials


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on the PATH")
def test_kustomize_renders_the_example_overlay():
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "k8s" / "overlays" / "example")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    objects = [o for o in yaml.safe_load_all(rendered.stdout) if o]
    kinds = sorted(o["kind"] for o in objects)
    assert kinds.count("NetworkPolicy") == 4 and "Namespace" in kinds
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "tessera", obj["metadata"]["name"]
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    assert set(deployments) == {"tessera-broker", "tessera-link-worker"}
    deployment = deployments["tessera-broker"]
    assert deployment["spec"]["replicas"] == 3
    images = {c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]}
    assert images == {"registry.example.nhs.uk/tessera/tessera-broker:0.1.0"}
