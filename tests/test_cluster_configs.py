"""The Ray cluster-launcher configs (cluster/aws.yaml, cluster/gcp.yaml).

Each is validated against the cluster-config JSON schema that ships inside the installed ``ray``
package, then checked for what the schema cannot know: a CPU head and autoscaling GPU workers,
the project installed on every node, the MLflow server on the head with object-store artifacts
and its login on, one shared search storage mount on every node, token auth, a dashboard that
is not exposed, and no credentials.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

REPO = Path(__file__).resolve().parents[1]
SCHEMA_PATH = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
CLOUDS = {"aws": ("aws", "s3://"), "gcp": ("gcp", "gs://")}  # file → provider, bucket scheme


@pytest.fixture(scope="module")
def schema() -> dict:
    assert SCHEMA_PATH.is_file(), f"ray no longer ships {SCHEMA_PATH}"
    return json.loads(SCHEMA_PATH.read_text())


def _load(name: str) -> dict:
    return yaml.safe_load((REPO / "cluster" / f"{name}.yaml").read_text())


def _joined(commands: list[str]) -> str:
    return "\n".join(commands)


@pytest.mark.parametrize("name", sorted(CLOUDS))
def test_validates_against_ray_schema(schema, name):
    config = _load(name)
    jsonschema.validate(config, schema, cls=jsonschema.Draft7Validator)
    assert config["provider"]["type"] == CLOUDS[name][0]


@pytest.mark.parametrize("name", sorted(CLOUDS))
def test_schema_check_is_not_vacuous(schema, name):
    """The same validator rejects the config once it is broken the ways a user might break it."""
    config = _load(name)
    fractional = copy.deepcopy(config)
    worker = next(t for t in fractional["available_node_types"] if t != config["head_node_type"])
    fractional["available_node_types"][worker]["resources"]["GPU"] = 0.5  # must be an integer
    misspelt = copy.deepcopy(config)
    misspelt["available_node_types"][worker]["max_worker"] = 3
    no_provider = {k: v for k, v in config.items() if k != "provider"}
    for broken in (fractional, misspelt, no_provider):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema, cls=jsonschema.Draft7Validator)


@pytest.mark.parametrize("name", sorted(CLOUDS))
def test_cpu_head_and_autoscaling_gpu_workers(name):
    config = _load(name)
    types = config["available_node_types"]
    head = config["head_node_type"]
    assert head in types
    assert types[head]["resources"].get("GPU", 0) == 0
    workers = {k: v for k, v in types.items() if k != head}
    gpu_types = {k: v for k, v in workers.items() if v["resources"].get("GPU", 0) >= 1}
    assert gpu_types, "no GPU worker type"
    for key, node in gpu_types.items():
        assert node["min_workers"] < node["max_workers"] <= config["max_workers"], key
    assert sum(n["max_workers"] for n in workers.values()) >= config["max_workers"] > 0


@pytest.mark.parametrize("name", sorted(CLOUDS))
def test_every_node_installs_the_project(name):
    config = _load(name)
    mounts = config["file_mounts"]
    synced = [remote for remote, local in mounts.items() if local == "."]
    assert synced, "the working tree is not synced to the nodes"
    setup = _joined(config["setup_commands"])  # setup_commands run on head and workers
    assert any(re.search(rf"pip install -e {re.escape(path)}\b", setup) for path in synced)
    assert config.get("worker_setup_commands") in ([], None)  # nothing overrides it per node
    for node in config["available_node_types"].values():
        assert "worker_setup_commands" not in node


@pytest.mark.parametrize("name", sorted(CLOUDS))
def test_tracking_server_and_storage_on_object_store(name):
    config = _load(name)
    scheme = CLOUDS[name][1]
    head = _joined(config["head_start_ray_commands"])
    workers = _joined(config["worker_start_ray_commands"])
    server = re.search(r"mlflow server[^\n]*", head)
    assert server, "no MLflow server on the head"
    assert f"--artifacts-destination {scheme}" in server.group(0)
    assert "--serve-artifacts" in server.group(0)
    port = re.search(r"--port (\d+)", server.group(0)).group(1)
    assert f"MLFLOW_TRACKING_URI=http://$RAY_HEAD_IP:{port}" in workers
    assert "MLFLOW_TRACKING_URI=http://" in head


@pytest.mark.parametrize("name", sorted(CLOUDS))
def test_shared_storage_is_one_mount_on_every_node(name):
    """search.storage_path must be a filesystem path: an NFS share at the same path everywhere."""
    config = _load(name)
    paths = {
        re.search(r"SAKDN_STORAGE=(\S+?);", _joined(config[key])).group(1)
        for key in ("head_start_ray_commands", "worker_start_ray_commands")
    }
    assert len(paths) == 1
    (path,) = paths
    assert path.startswith("/")
    setup = _joined(config["setup_commands"])  # runs on the head and on every worker
    mount = re.search(r"mount -t nfs\S*.*?\s(\S+:\S*)\s+(\S+)\)", setup)
    assert mount, "no NFS mount in setup_commands"
    assert mount.group(2) == path


@pytest.mark.parametrize("name", sorted(CLOUDS))
def test_token_auth_on_and_dashboard_not_exposed(name):
    config = _load(name)
    head = _joined(config["head_start_ray_commands"])
    workers = _joined(config["worker_start_ray_commands"])
    for commands in (head, workers):
        assert "RAY_AUTH_MODE=token" in commands
    assert "--dashboard-host=127.0.0.1" in head
    assert "0.0.0.0" not in head + workers
    # The token file is copied from the launching machine, never written into the config.
    assert any(remote.endswith(".ray/auth_token") for remote in config["file_mounts"])


@pytest.mark.parametrize("name", sorted(CLOUDS))
def test_tracking_server_requires_a_login_and_searches_use_a_non_admin_user(name):
    config = _load(name)
    head = _joined(config["head_start_ray_commands"])
    workers = _joined(config["worker_start_ray_commands"])
    server = re.search(r"(\S+) (\S+) -- mlflow server ([^\n]*)", head)
    assert server, "the MLflow server is not started through cluster/mlflow-auth.sh"
    wrapper, auth_dir, args = server.groups()
    assert wrapper.endswith("/cluster/mlflow-auth.sh")
    assert (REPO / "cluster" / "mlflow-auth.sh").is_file()
    assert "--app-name basic-auth" in args  # MLflow's authentication app
    # the searches' login: a credentials file from the launching machine on every node, its
    # path (not the password) in every Ray process's environment
    (login,) = [remote for remote in config["file_mounts"] if remote.endswith(".credentials")]
    assert config["file_mounts"][login] == login  # the same path on this machine
    exported = login.replace("~", "$HOME", 1)
    for commands in (head, workers):
        assert f"export SAKDN_MLFLOW_CREDENTIALS={exported};" in commands
    # the head's admin (made by mlflow-auth.sh in its directory) creates that user
    made = re.search(r"SAKDN_MLFLOW_CREDENTIALS=(\S+) sakdn tracking-user --credentials (\S+)",
                     head)
    assert made, "no search user is created on the head"
    admin, user = made.groups()
    assert admin.replace("$HOME", "~") == f"{auth_dir}/mlflow_admin.credentials"
    assert user == login
    assert head.index("-- mlflow server") < head.index("sakdn tracking-user")


CREDENTIAL_PATTERNS = [
    r"AKIA[0-9A-Z]{16}",                        # AWS access key id
    r"(?i)aws_secret_access_key|secret_access_key",
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    r"(?i)password\s*[:=]",
    r'"private_key"',
]


@pytest.mark.parametrize("name", sorted(CLOUDS))
def test_no_credentials_in_the_file(name):
    text = (REPO / "cluster" / f"{name}.yaml").read_text()
    for pattern in CREDENTIAL_PATTERNS:
        assert not re.search(pattern, text), pattern
    config = _load(name)
    assert set(config["auth"]) == {"ssh_user"}  # no key paths or passwords
    assert "gcp_credentials" not in config["provider"]


def test_cluster_docs_name_files_that_exist():
    text = (REPO / "docs" / "cluster.md").read_text()
    named = set(re.findall(r"\bcluster/[\w./-]+\.(?:yaml|sh)\b", text))
    assert {"cluster/aws.yaml", "cluster/gcp.yaml", "cluster/local/stop.sh"} <= named
    assert [path for path in sorted(named) if not (REPO / path).is_file()] == []
