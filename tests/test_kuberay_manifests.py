"""The KubeRay manifests (cluster/kuberay/*.yaml), parsed with the safe loader.

Checks what a cluster would otherwise only reveal at deploy time: required fields, one project
image everywhere, GPU limits on the worker group, a RayJob entrypoint the ``sakdn`` CLI accepts,
the tracking URI pointing at the MLflow Service, a tracking server that requires a login whose
admin and search user come from a Secret, secrets only by reference, nothing exposed.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from sakdn.cli import _parser

REPO = Path(__file__).resolve().parents[1]
KUBERAY = REPO / "cluster" / "kuberay"


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    out = []
    for path in sorted(KUBERAY.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                assert {"apiVersion", "kind", "metadata"} <= set(doc), path
                out.append(doc)
    return out


def _one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _containers(doc: dict) -> list[dict]:
    """Every container spec (init containers too) anywhere inside a manifest."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("containers", "initContainers") and isinstance(value, list):
                    found.extend(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(doc)
    return found


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def _secret_ref(entry: dict) -> dict:
    return entry.get("valueFrom", {}).get("secretKeyRef", {})


def _mlflow_url(docs: list[dict]) -> str:
    service = _one(docs, "Service", "sakdn-mlflow")
    return f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"


AUTH_SECRET = "sakdn-mlflow-auth"


def _server(docs: list[dict]) -> tuple[dict, dict]:
    """The tracking server's pod spec and its one container."""
    pod = _one(docs, "Deployment", "sakdn-mlflow")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


PROJECT_IMAGE = re.compile(r"^[a-z0-9.\-]+(/[a-z0-9.\-_]+)+/sakdn-search:[0-9][\w.\-]*$")


def test_raycluster_shape(docs):
    cluster = _one(docs, "RayCluster")
    assert cluster["apiVersion"] == "ray.io/v1"
    spec = cluster["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    head_container = head["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in head_container["resources"].get("limits", {})
    groups = spec["workerGroupSpecs"]
    gpu_groups = []
    for group in groups:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group["groupName"]
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        if int(limits.get("nvidia.com/gpu", 0)) >= 1:
            gpu_groups.append(group)
            requests = group["template"]["spec"]["containers"][0]["resources"].get("requests", {})
            gpus = limits["nvidia.com/gpu"]
            assert requests.get("nvidia.com/gpu", gpus) == gpus
    assert gpu_groups, "no worker group with nvidia.com/gpu limits"
    assert any(g["maxReplicas"] > g["minReplicas"] for g in gpu_groups)  # it autoscales


def test_one_pinned_project_image_everywhere(docs):
    cluster = _one(docs, "RayCluster")
    images = {c["image"] for c in _containers(cluster)}
    images |= {c["image"] for c in _containers(_one(docs, "RayJob"))}
    images |= {c["image"] for c in _containers(_one(docs, "Deployment", "sakdn-mlflow"))}
    assert len(images) == 1, images  # head, workers, submitter and tracking server match
    (image,) = images
    assert PROJECT_IMAGE.match(image), image
    assert re.fullmatch(r"\d+\.\d+\.\d+", cluster["spec"]["rayVersion"])
    for doc in docs:
        for container in _containers(doc):
            assert not container["image"].endswith(":latest") and ":" in container["image"]


def test_ray_processes_use_token_auth_and_the_tracking_service(docs):
    cluster = _one(docs, "RayCluster")
    url = _mlflow_url(docs)
    envs = [_env(c) for c in _containers(cluster)]
    envs.append({e["name"]: e for e in cluster["spec"]["autoscalerOptions"]["env"]})
    envs += [_env(c) for c in _containers(_one(docs, "RayJob"))]
    for env in envs:
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert _secret_ref(env["RAY_AUTH_TOKEN"]) == {"name": "sakdn-ray-auth", "key": "token"}
    for container in _containers(cluster):
        assert _env(container)["MLFLOW_TRACKING_URI"]["value"] == url


def test_rayjob_runs_a_search_the_cli_accepts(docs):
    job = _one(docs, "RayJob")
    assert job["apiVersion"] == "ray.io/v1"
    cluster = _one(docs, "RayCluster")
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[0] == "sakdn"
    args = _parser().parse_args(argv[1:])
    assert args.command == "search"
    assert args.experiment.parts[0] == "experiments" and args.experiment.suffix == ".yaml"
    assert not args.resume
    runtime_env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    assert runtime_env["env_vars"]["MLFLOW_TRACKING_URI"] == _mlflow_url(docs)
    # The search directory lies on the volume every Ray pod shares (not a pod-local path).
    shared = _shared_mount(docs)
    assert runtime_env["env_vars"]["SAKDN_STORAGE"] == shared
    storage = [s.split("=", 1)[1] for s in args.set if s.startswith("search.storage_path=")]
    assert storage and Path(storage[0]).is_relative_to(shared)


def _shared_mount(docs: list[dict]) -> str:
    """The mount path of the ReadWriteMany claim in every Ray pod (asserted to be one path)."""
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"
              and "ReadWriteMany" in d["spec"]["accessModes"]}
    cluster = _one(docs, "RayCluster")["spec"]
    pods = [cluster["headGroupSpec"]["template"]["spec"]]
    pods += [g["template"]["spec"] for g in cluster["workerGroupSpecs"]]
    paths = set()
    for pod in pods:
        volumes = {v["name"] for v in pod["volumes"]
                   if v.get("persistentVolumeClaim", {}).get("claimName") in claims}
        (container,) = pod["containers"]
        mounted = {m["mountPath"] for m in container["volumeMounts"] if m["name"] in volumes}
        assert len(mounted) == 1, "every Ray pod mounts the shared claim once"
        paths |= mounted
        assert _env(container)["SAKDN_STORAGE"]["value"] in mounted
    assert len(paths) == 1, paths
    return paths.pop()


def test_every_ray_pod_reads_pretrained_weights_from_the_shared_volume(docs):
    shared = _shared_mount(docs)
    for container in _containers(_one(docs, "RayCluster")):
        torch_home = _env(container)["TORCH_HOME"]["value"]
        assert Path(torch_home).is_relative_to(shared), torch_home


def test_rayjob_experiment_file_exists(docs):
    experiment = Path(shlex.split(_one(docs, "RayJob")["spec"]["entrypoint"])[2])
    if not (REPO / experiment).exists():
        pytest.skip(f"{experiment} is not in the repository yet")
    assert isinstance(yaml.safe_load((REPO / experiment).read_text()), dict)


def test_mlflow_server_postgres_backend_and_object_store(docs):
    deployment = _one(docs, "Deployment", "sakdn-mlflow")
    _, container = _server(docs)
    argv = container["command"] + container["args"]
    assert argv[:2] == ["mlflow", "server"]
    flags = dict(a.split("=", 1) for a in argv[2:] if "=" in a)
    uri_var = re.fullmatch(r"\$\((\w+)\)", flags["--backend-store-uri"]).group(1)
    assert _secret_ref(_env(container)[uri_var])["name"] == "sakdn-mlflow-db"
    assert flags["--artifacts-destination"].startswith(("s3://", "gs://"))
    assert "--serve-artifacts" in argv
    assert any(h.startswith("sakdn-mlflow") for h in flags["--allowed-hosts"].split(","))
    service = _one(docs, "Service", "sakdn-mlflow")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert service["spec"]["ports"][0]["targetPort"] in port_names
    # The database: the bundled PostgreSQL (or a note that a managed one is expected).
    postgres = _one(docs, "StatefulSet", "sakdn-postgres")
    (db,) = _containers(postgres)
    assert _secret_ref(_env(db)["POSTGRES_PASSWORD"])["name"] == "sakdn-mlflow-db"
    assert "managed PostgreSQL" in (KUBERAY / "postgres.yaml").read_text()


def test_mlflow_server_requires_a_login_with_its_admin_from_a_secret(docs):
    pod, container = _server(docs)
    argv = container["command"] + container["args"]
    assert argv[:2] == ["mlflow", "server"]
    assert "--app-name=basic-auth" in argv  # MLflow's authentication app: every request logs in
    env = _env(container)
    # the admin is created with the Secret's password, never a default; the CSRF key too
    admin_password = _secret_ref(env["MLFLOW_AUTH_ADMIN_PASSWORD"])
    assert admin_password["name"] == AUTH_SECRET
    assert _secret_ref(env["MLFLOW_FLASK_SERVER_SECRET_KEY"])["name"] == AUTH_SECRET
    assert admin_password["key"] != _secret_ref(env["MLFLOW_FLASK_SERVER_SECRET_KEY"])["key"]
    # the auth config: written by an init container into a volume the server mounts, with no
    # default access and no password of its own (the users live in the backend database)
    config = env["MLFLOW_AUTH_CONFIG_PATH"]["value"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volume = next(name for name, path in mounts.items() if config.startswith(path + "/"))
    (init,) = pod["initContainers"]
    assert {m["name"]: m["mountPath"] for m in init["volumeMounts"]}[volume] == mounts[volume]
    assert _env(init)["MLFLOW_AUTH_CONFIG_PATH"]["value"] == config
    script = " ".join(init["command"] + init["args"])
    assert '> "$MLFLOW_AUTH_CONFIG_PATH"' in script
    assert "default_permission = NO_PERMISSIONS" in script and "admin_password" not in script
    assert "database_uri = $(printf %s \"$MLFLOW_BACKEND_STORE_URI\"" in script
    assert _secret_ref(_env(init)["MLFLOW_BACKEND_STORE_URI"])["name"] == "sakdn-mlflow-db"
    admin = env["MLFLOW_AUTH_ADMIN_USERNAME"]["value"]
    assert _env(init)["MLFLOW_AUTH_ADMIN_USERNAME"]["value"] == admin


def test_searches_log_in_as_a_non_admin_user_from_the_secret(docs):
    _, server = _server(docs)
    admin = _env(server)["MLFLOW_AUTH_ADMIN_USERNAME"]["value"]
    admin_key = _secret_ref(_env(server)["MLFLOW_AUTH_ADMIN_PASSWORD"])["key"]
    # every Ray pod (driver and trials) logs in as one user, its password from the Secret
    logins = set()
    for container in _containers(_one(docs, "RayCluster")):
        env = _env(container)
        password = _secret_ref(env["MLFLOW_TRACKING_PASSWORD"])
        assert password["name"] == AUTH_SECRET
        logins.add((env["MLFLOW_TRACKING_USERNAME"]["value"], password["key"]))
    assert len(logins) == 1
    ((user, key),) = logins
    assert user != admin and key != admin_key
    # the job's runtime environment carries no login: the pods' environment does
    runtime_env = yaml.safe_load(_one(docs, "RayJob")["spec"]["runtimeEnvYAML"])
    assert not {k for k in runtime_env.get("env_vars", {}) if k.startswith("MLFLOW_TRACKING_")} - {
        "MLFLOW_TRACKING_URI"}
    # the Job that makes that user logs in as the admin and hands the user's login to
    # `sakdn tracking-user` on stdin, with the password of the same Secret key
    job = _one(docs, "Job", "sakdn-mlflow-users")
    (container,) = _containers(job)
    env = _env(container)
    assert env["MLFLOW_TRACKING_USERNAME"]["value"] == admin
    assert _secret_ref(env["MLFLOW_TRACKING_PASSWORD"]) == {"name": AUTH_SECRET, "key": admin_key}
    assert env["MLFLOW_TRACKING_URI"]["value"] == _mlflow_url(docs)
    script = " ".join(container["args"])
    produce, _, consume = script.partition(" | ")
    args = _parser().parse_args(shlex.split(consume)[1:])
    assert shlex.split(consume)[0] == "sakdn" and args.command == "tracking-user"
    assert args.credentials == "-"
    (variable,) = re.findall(r'"\$(\w+)"', produce)
    assert _secret_ref(env[variable]) == {"name": AUTH_SECRET, "key": key}
    assert shlex.split(produce)[:2] == ["printf", "[mlflow]\\nmlflow_tracking_username = %s\\n"
                                        "mlflow_tracking_password = %s\\n"]
    assert shlex.split(produce)[2] == user


SENSITIVE_NAME = re.compile(r"(?i)password|secret|token|credential|access_key|backend_store_uri")
CREDENTIAL_IN_URL = re.compile(r"://[^/\s@]+:[^/\s@]+@")  # scheme://user:password@host


def test_no_plaintext_credentials(docs):
    assert not [d for d in docs if d["kind"] == "Secret"], "Secrets are created with kubectl"
    for doc in docs:
        for container in _containers(doc):
            for name, entry in _env(container).items():
                if SENSITIVE_NAME.search(name):
                    assert _secret_ref(entry), f"{name} must come from a secretKeyRef"
                assert not CREDENTIAL_IN_URL.search(str(entry.get("value", ""))), name
            for arg in container.get("command", []) + container.get("args", []):
                assert not CREDENTIAL_IN_URL.search(arg), arg
    for path in KUBERAY.glob("*.yaml"):
        text = path.read_text()
        assert not re.search(r"AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY", text), path


def test_nothing_exposed_outside_the_cluster(docs):
    assert _one(docs, "RayCluster")["spec"]["headGroupSpec"]["serviceType"] == "ClusterIP"
    for doc in docs:
        assert doc["kind"] not in ("Ingress", "Route", "Gateway"), doc["metadata"]["name"]
        if doc["kind"] == "Service":
            assert doc["spec"].get("type", "ClusterIP") == "ClusterIP", doc["metadata"]["name"]
