"""deploy/k8s/, offline: the overlays render with kustomize (kubectl's), every object they make
and every Secret of secrets.example.yaml is valid for two Kubernetes releases in strict mode,
checkov finds nothing that the README does not justify, and the manifests agree with the code
they run: the commands parse as portico's, every PORTICO_* is a setting of that process and
its values pass the settings' validation, every file setting is a key of a mounted Secret, the
addresses name the headless Services and their ports, the probes and the drain fit the
process's own shutdown, and every pod is locked down the same way."""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import pytest

from gateway.settings import GatewaySettings
from services import cli
from services.common.settings import ServiceSettings
from tests.deploy.tools import (
    CONTAINERFILE,
    K8S,
    KUBERNETES_VERSIONS,
    OVERLAYS,
    ROOT,
    checkov,
    missing,
    of_kind,
    rendered,
    rendered_text,
    run,
    secrets_example,
)

SERVICES = ("user", "product", "order")
WORKLOADS = ("gateway", *SERVICES)
NAMESPACE = "portico"
PROBE = "/etc/portico/probe/grpc-health.py"
# Settings read straight from the environment rather than through a settings class.
READ_DIRECTLY = {"PORTICO_LOG_FORMAT"}  # services/common/logs.py
EVERY = ("base", *OVERLAYS)


def deployments(overlay: str) -> dict[str, dict]:
    return of_kind(rendered(overlay), "Deployment")


def pod(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]


def containers(deployment: dict) -> list[dict]:
    spec = pod(deployment)
    return [*spec.get("initContainers", []), *spec["containers"]]


def main_container(deployment: dict) -> dict:
    (container,) = pod(deployment)["containers"]
    return container


def container_env(container: dict, docs: list[dict]) -> dict[str, tuple[str, object]]:
    """Each variable of `container`: ("configmap", value), ("secret", (name, key)) or
    ("inline", value)."""
    configmaps = of_kind(docs, "ConfigMap")
    env: dict[str, tuple[str, object]] = {}
    for source in container.get("envFrom", []):
        data = configmaps[source["configMapRef"]["name"]].get("data", {})
        env.update({name: ("configmap", value) for name, value in data.items()})
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = ("inline", item["value"])
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = ("secret", (ref["name"], ref["key"]))
    return env


def example_values() -> dict[tuple[str, str], str]:
    return {(doc["metadata"]["name"], key): value for doc in secrets_example()
            for key, value in doc.get("stringData", {}).items()}


def settings_class(container: dict) -> type:
    return GatewaySettings if container["args"][0] == "gateway" else ServiceSettings


def service_port(deployment: dict) -> int:
    (port,) = main_container(deployment)["ports"]
    return port["containerPort"]


# --- rendering and schemas -----------------------------------------------------------------

@pytest.mark.parametrize("overlay", EVERY)
def test_the_overlays_render_with_kustomize(overlay: str) -> None:
    kinds = sorted({doc["kind"] for doc in rendered(overlay)})
    assert {"Deployment", "Service", "ConfigMap", "PodDisruptionBudget",
            "HorizontalPodAutoscaler", "NetworkPolicy", "ServiceAccount", "Namespace"} <= set(kinds)
    # The Secrets are the operator's: no overlay makes one, so no apply overwrites theirs.
    assert "Secret" not in kinds
    assert all(doc["metadata"].get("namespace", NAMESPACE) == NAMESPACE
               for doc in rendered(overlay))


def _validator():
    try:
        import kubernetes_validate
    except ImportError:
        missing("kubernetes-validate", "the dev extra: scripts/bootstrap.sh")
    return kubernetes_validate


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", [*EVERY, "secrets.example.yaml"])
def test_every_object_is_valid_for_the_release_strictly(overlay: str, version: str) -> None:
    validator = _validator()
    docs = secrets_example() if overlay.endswith(".yaml") else rendered(overlay)
    errors = []
    for doc in docs:
        try:
            validator.validate(doc, version, strict=True)
        except validator.ValidationError as error:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {error}")
    assert errors == []


def test_strict_validation_refuses_an_unknown_field() -> None:
    validator = _validator()
    deployment = copy.deepcopy(deployments("production")["gateway"])
    validator.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)
    main_container(deployment)["readinessProbe"]["httpGet"]["paht"] = "/readyz"
    with pytest.raises(validator.ValidationError):
        validator.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


# --- checkov -------------------------------------------------------------------------------

def _readme_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Running on Kubernetes")
    return text[start:text.index("\n## ", start + 1)]


def test_checkov_finds_nothing_the_readme_does_not_justify(tmp_path: Path) -> None:
    command = checkov()
    for overlay in OVERLAYS:
        (tmp_path / f"{overlay}.yaml").write_text(rendered_text(overlay))
    (tmp_path / "secrets.example.yaml").write_text((K8S / "secrets.example.yaml").read_text())
    # checkov knows a Dockerfile by its name.
    (tmp_path / "Dockerfile").write_text(CONTAINERFILE.read_text())
    done = run(command, "--directory", str(tmp_path), "--framework", "kubernetes", "dockerfile",
               "--output", "json", "--skip-download", timeout=180)
    reports = json.loads(done.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert {report["check_type"] for report in reports} == {"kubernetes", "dockerfile"}
    failed = [f"{check['check_id']} {check['resource']} {check['file_path']}"
              for report in reports for check in report["results"]["failed_checks"]]
    assert failed == []
    assert all(report["summary"]["parsing_errors"] == 0 for report in reports)
    assert sum(report["summary"]["passed"] for report in reports) > 100
    skipped = {check["check_id"] for report in reports
               for check in report["results"]["skipped_checks"]}
    readme = _readme_section()
    assert sorted(check for check in skipped if check not in readme) == []


# --- the manifests against the code --------------------------------------------------------

@pytest.mark.parametrize("overlay", EVERY)
def test_every_command_is_a_portico_command(overlay: str, monkeypatch) -> None:
    import gateway.__main__ as gateway_main

    started = []
    monkeypatch.setattr(gateway_main, "run_gateway", lambda **kw: started.append(kw) or 0)
    for name, deployment in deployments(overlay).items():
        port = service_port(deployment)
        for container in containers(deployment):
            args = container["args"]
            assert "command" not in container  # the image's entrypoint, portico, runs
            if args[0] == "gateway":
                assert gateway_main.main(args[1:]) == 0
                assert started.pop() == {"host": "0.0.0.0", "port": port, "workers": 1}
                continue
            parsed = cli.parser().parse_args(args)
            if args[0] == "service":
                assert (parsed.name, parsed.host, parsed.port) == (name, "0.0.0.0", port)
            else:
                assert args == ["migrate", name], "each service migrates its own store"


@pytest.mark.parametrize("overlay", EVERY)
def test_every_setting_is_one_of_the_process_and_comes_from_a_configmap_or_secret(
        overlay: str) -> None:
    docs = rendered(overlay)
    for deployment in deployments(overlay).values():
        for container in containers(deployment):
            env = container_env(container, docs)
            fields = {f"PORTICO_{name.upper()}" for name in settings_class(container).model_fields}
            unknown = {name for name in env if name not in fields | READ_DIRECTLY}
            assert unknown == set(), f"{container['name']}: not settings of its process"
            assert [name for name, (source, _) in env.items() if source == "inline"] == []


@pytest.mark.parametrize("overlay", EVERY)
def test_the_settings_pass_validation_and_every_file_is_a_mounted_secret_key(
        overlay: str, monkeypatch) -> None:
    docs = rendered(overlay)
    values = example_values()
    for deployment in deployments(overlay).values():
        volumes = {v["name"]: v for v in pod(deployment)["volumes"]}
        for container in containers(deployment):
            env = container_env(container, docs)
            mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
            serving = container in pod(deployment)["containers"]
            for name, (source, value) in env.items():
                if source == "secret":
                    assert value in values, f"{name}: {value} is not in secrets.example.yaml"
                # What the process reads: a server every file it is given; the user service's
                # migrate step the signing key (the others' read no file).
                if name.endswith("_FILE") and (serving or name == "PORTICO_JWT_PRIVATE_KEY_FILE"):
                    folder, _, key = value.rpartition("/")
                    assert folder in mounts, f"{container['name']}: {name} is not mounted"
                    secret = mounts[folder]["secret"]["secretName"]
                    assert (secret, key) in values, f"{name}: {secret} has no key {key}"
            for variable in [v for v in os.environ if v.startswith("PORTICO_")]:
                monkeypatch.delenv(variable)
            for name, (source, value) in env.items():
                optional = source == "secret" and value[0] == "portico-first-admin"
                if not optional:
                    monkeypatch.setenv(name, values[value] if source == "secret" else value)
            settings_class(container)()  # raises on a bad value


@pytest.mark.parametrize("overlay", EVERY)
def test_the_addresses_name_each_headless_service_and_its_port(overlay: str) -> None:
    docs = rendered(overlay)
    services = of_kind(docs, "Service")
    found = deployments(overlay)
    for name in SERVICES:
        service = services[name]
        assert service["spec"]["clusterIP"] == "None", f"{name} must be headless"
        (port,) = service["spec"]["ports"]
        assert port["port"] == service_port(found[name]) and port["targetPort"] == "grpc"
        assert service["spec"]["selector"] == found[name]["spec"]["selector"]["matchLabels"]
    expected = {name: f"dns:///{name}.{NAMESPACE}.svc.cluster.local:{service_port(found[name])}"
                for name in SERVICES}
    for client, names in (("gateway", SERVICES), ("order", ("user", "product"))):
        env = container_env(main_container(found[client]), docs)
        for name in names:
            assert env[f"PORTICO_{name.upper()}_ADDRS"] == ("configmap", expected[name])
    gateway = services["gateway"]
    assert gateway["spec"]["ports"][0]["targetPort"] == "http"
    if overlay == "production":
        assert gateway["spec"]["type"] == "LoadBalancer"
        assert gateway["spec"]["externalTrafficPolicy"] == "Local"  # the clients' addresses
    else:
        assert gateway["spec"]["type"] == "ClusterIP"


def _uvicorn_drain_seconds() -> int:
    source = (ROOT / "gateway" / "edge" / "server.py").read_text()
    return int(re.search(r"timeout_graceful_shutdown=(\d+)", source).group(1))


@pytest.mark.parametrize("overlay", EVERY)
def test_the_probes_and_the_drain_fit_each_process(overlay: str) -> None:
    docs = rendered(overlay)
    probe_file = (K8S / "base" / "probe" / "grpc-health.py").read_text()
    for name, deployment in deployments(overlay).items():
        container = main_container(deployment)
        port = service_port(deployment)
        sleep = container["lifecycle"]["preStop"]["exec"]["command"]
        assert sleep[0] == "sleep"
        if name == "gateway":
            assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
            assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
            drain = _uvicorn_drain_seconds()
        else:
            command = ["python", PROBE, str(port)]
            assert container["readinessProbe"]["exec"]["command"] == command
            assert container["livenessProbe"]["exec"]["command"] == command
            assert container["startupProbe"]["tcpSocket"]["port"] == "grpc"
            (mount,) = [m for m in container["volumeMounts"] if PROBE.startswith(m["mountPath"])]
            volume = {v["name"]: v for v in pod(deployment)["volumes"]}[mount["name"]]
            configmap = of_kind(docs, "ConfigMap")[volume["configMap"]["name"]]
            assert configmap["data"]["grpc-health.py"] == probe_file
            drain = float(container_env(container, docs)["PORTICO_GRACE_PERIOD_SECONDS"][1])
        # preStop sleep, then the process's own drain, and a margin: all before SIGKILL.
        grace = pod(deployment)["terminationGracePeriodSeconds"]
        assert grace >= int(sleep[1]) + drain + 5, name
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["timeoutSeconds"] <= container[probe]["periodSeconds"]


@pytest.mark.parametrize("overlay", EVERY)
def test_every_pod_is_locked_down(overlay: str) -> None:
    uid = int(re.search(r"^USER (\d+):(\d+)$", CONTAINERFILE.read_text(), re.M).group(1))
    accounts = of_kind(rendered(overlay), "ServiceAccount")
    images = set()
    for name, deployment in deployments(overlay).items():
        spec = pod(deployment)
        assert spec["automountServiceAccountToken"] is False
        assert accounts[spec["serviceAccountName"]]["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == uid
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in containers(deployment):
            images.add(container["image"])
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["runAsNonRoot"] is True and context["runAsUser"] == uid
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}
            resources = container["resources"]
            assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert len(tmp) == 1 and "emptyDir" in volumes[tmp[0]["name"]], container["name"]
            assert all(m.get("readOnly") for m in container["volumeMounts"]
                       if "emptyDir" not in volumes[m["name"]])
        for volume in volumes.values():
            if "secret" in volume:
                assert volume["secret"]["defaultMode"] == 0o440
    assert len(images) == 1, "one image for every process"


@pytest.mark.parametrize("overlay", EVERY)
def test_every_workload_is_spread_and_budgeted_and_the_gateway_scales(overlay: str) -> None:
    docs = rendered(overlay)
    budgets = list(of_kind(docs, "PodDisruptionBudget").values())
    (autoscaler,) = of_kind(docs, "HorizontalPodAutoscaler").values()
    for name, deployment in deployments(overlay).items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert [b for b in budgets if b["spec"]["selector"]["matchLabels"] == selector], name
        spread = pod(deployment)["topologySpreadConstraints"]
        assert [c["topologyKey"] for c in spread] == ["kubernetes.io/hostname",
                                                      "topology.kubernetes.io/zone"]
        assert all(c["labelSelector"]["matchLabels"].items() <= labels.items() for c in spread)
        strict = "DoNotSchedule" if overlay == "production" else "ScheduleAnyway"
        assert spread[0]["whenUnsatisfiable"] == strict
        if name == "gateway":
            assert "replicas" not in deployment["spec"], "the autoscaler owns the count"
        else:
            assert deployment["spec"]["replicas"] >= (3 if overlay == "production" else 1)
    assert autoscaler["apiVersion"] == "autoscaling/v2"
    assert autoscaler["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1",
                                                   "kind": "Deployment", "name": "gateway"}
    (metric,) = autoscaler["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"


@pytest.mark.parametrize("overlay", EVERY)
def test_network_policies_select_every_pod_and_name_its_ports(overlay: str) -> None:
    policies = of_kind(rendered(overlay), "NetworkPolicy")
    assert policies["default-deny-ingress"]["spec"] == {"podSelector": {},
                                                        "policyTypes": ["Ingress"]}
    for name, deployment in deployments(overlay).items():
        policy = policies[name]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
        ports = {port["name"] for port in main_container(deployment)["ports"]}
        assert {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]} <= ports


def test_the_secrets_example_holds_placeholders_only() -> None:
    secrets = secrets_example()
    assert {s["metadata"]["name"] for s in secrets} >= {
        "portico-postgres", "portico-redis", "portico-mongodb", "portico-jwt-private",
        "portico-jwt-public", *(f"portico-mtls-{name}" for name in WORKLOADS)}
    for secret in secrets:
        assert "data" not in secret, "stringData only: a base64 value could hide a real one"
        for key, value in secret["stringData"].items():
            assert "REPLACE-ME" in value or value.endswith("@example.com"), (secret, key)
