"""The tracking server's login: where a client's credentials come from, the driver's check,
the admin's user management, and the wrapper that starts a server with authentication on.

The first tests need no server. The rest run a real ``mlflow server --app-name basic-auth``
on a free loopback port, started by ``cluster/mlflow-auth.sh`` as the clusters start theirs.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Iterator
from pathlib import Path

import pytest

from sakdn.errors import TrackingLoginError
from sakdn.tracking_auth import (
    CREDENTIALS_VAR,
    PASSWORD_VAR,
    USERNAME_VAR,
    check_login,
    read_credentials,
    use_credentials,
)
from tests.processes import stop_group

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SMOKE = REPO / "experiments" / "synthetic_smoke.yaml"


def write_login(path: Path, user: str, password: str) -> Path:
    """An MLflow credentials file, as the cluster scripts write them."""
    path.write_text(f"[mlflow]\nmlflow_tracking_username = {user}\n"
                    f"mlflow_tracking_password = {password}\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def no_login(monkeypatch, tmp_path) -> None:
    """No login anywhere: no variables, and a HOME without ~/.mlflow/credentials."""
    for var in (USERNAME_VAR, PASSWORD_VAR, CREDENTIALS_VAR):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


# --- where the login comes from (no server) --------------------------------------------------


def test_credentials_file_is_read_and_its_problems_are_named(tmp_path, monkeypatch):
    good = write_login(tmp_path / "search.credentials", "sakdn-search", "p" * 32)
    assert read_credentials(good) == ("sakdn-search", "p" * 32)
    monkeypatch.setattr(sys, "stdin", io.StringIO(good.read_text()))
    assert read_credentials("-") == ("sakdn-search", "p" * 32)
    with pytest.raises(TrackingLoginError, match=r"cannot read the credentials file "
                       rf"{tmp_path}/absent \(FileNotFoundError\)"):
        read_credentials(tmp_path / "absent")
    half = tmp_path / "half"
    half.write_text("[mlflow]\nmlflow_tracking_username = sakdn-search\n")
    with pytest.raises(TrackingLoginError, match="lacks \\[mlflow\\] mlflow_tracking_username "
                       "and mlflow_tracking_password"):
        read_credentials(half)


def test_the_file_fills_only_what_the_environment_leaves_unset(tmp_path, monkeypatch, no_login):
    path = write_login(tmp_path / "search.credentials", "sakdn-search", "file-password-123")
    monkeypatch.setenv(CREDENTIALS_VAR, str(path))
    login = use_credentials()
    assert (os.environ[USERNAME_VAR], os.environ[PASSWORD_VAR]) == (
        "sakdn-search", "file-password-123")
    assert login.username == "sakdn-search" and login.has_password
    assert login.username_from == login.password_from == f"{CREDENTIALS_VAR}={path}"
    # a job's runtime environment overrides one part: the other still comes from the file
    monkeypatch.delenv(USERNAME_VAR)
    monkeypatch.setenv(PASSWORD_VAR, "env-password-456")
    login = use_credentials()
    assert (os.environ[USERNAME_VAR], os.environ[PASSWORD_VAR]) == (
        "sakdn-search", "env-password-456")
    assert (login.username_from, login.password_from) == (f"{CREDENTIALS_VAR}={path}",
                                                          PASSWORD_VAR)


def test_an_unusable_credentials_file_is_one_error_naming_the_variable(
    tmp_path, monkeypatch, no_login
):
    monkeypatch.setenv(CREDENTIALS_VAR, str(tmp_path / "gone"))
    with pytest.raises(TrackingLoginError) as err:
        use_credentials("http://10.0.0.1:5000")
    assert str(err.value) == (f"tracking server http://10.0.0.1:5000: {CREDENTIALS_VAR}: cannot "
                              f"read the credentials file {tmp_path}/gone (FileNotFoundError)")


def test_local_stores_need_no_login(tmp_path, monkeypatch, no_login):
    monkeypatch.setenv(CREDENTIALS_VAR, str(tmp_path / "gone"))  # never read for a local store
    assert check_login(f"sqlite:///{tmp_path}/mlflow.db").username is None
    assert USERNAME_VAR not in os.environ


def test_a_password_in_the_uri_is_refused_without_repeating_it(no_login):
    with pytest.raises(TrackingLoginError) as err:
        check_login("http://sakdn-search:s3cret-in-uri@127.0.0.1:5000")
    assert "s3cret-in-uri" not in str(err.value)
    assert str(err.value).startswith("tracking server http://sakdn-search:***@127.0.0.1:5000: "
                                     "the URI holds a password")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_server_is_named(no_login):
    uri = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(TrackingLoginError, match=rf"^tracking server {uri}: does not answer "
                       r"\(.*Connection refused"):
        check_login(uri)


def test_the_summary_opens_a_local_store_on_loopback_only(capsys):
    from sakdn.search.run import SearchResult, _print_summary

    for uri, expected in (("sqlite:///runs/search/mlflow.db", "compare: mlflow ui --host "
                           "127.0.0.1 --backend-store-uri sqlite:///runs/search/mlflow.db"),
                          ("http://10.1.2.1:5000", "compare: open http://10.1.2.1:5000/#/experiments")):
        _print_summary(SearchResult("s", "/x", uri, None, None, "sqlite://", "s", ("m",)))
        assert expected in capsys.readouterr().out


# --- a real tracking server with its login on ------------------------------------------------


class Server:
    def __init__(self, root: Path, port: int) -> None:
        self.root, self.uri = root, f"http://127.0.0.1:{port}"
        self.log = open(root / "server.log", "w")
        self.proc = subprocess.Popen(
            [str(REPO / "cluster" / "mlflow-auth.sh"), str(root / "auth"), "--",
             str(BIN / "mlflow"), "server", "--app-name", "basic-auth", "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
             "--artifacts-destination", str(root / "artifacts"), "--serve-artifacts"],
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def admin_file(self) -> Path:
        return self.root / "auth" / "mlflow_admin.credentials"

    def wait(self, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.status("/health") == 200:
                return
            assert self.proc.poll() is None, (self.root / "server.log").read_text()[-3000:]
            time.sleep(0.5)
        raise AssertionError("the MLflow server did not answer")

    def status(self, path: str, login: tuple[str, str] | None = None, method: str = "GET",
               body: bytes | None = None) -> int:
        request = urllib.request.Request(self.uri + path, method=method, data=body,
                                         headers={"Content-Type": "application/json"})
        if login:
            token = b64encode(f"{login[0]}:{login[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as err:
            return err.code
        except OSError:
            return 0

    def stop(self) -> None:
        stop_group(self.proc)
        self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("auth-server"), _free_port())
    try:
        s.wait()
        yield s
    finally:
        s.stop()


def sakdn(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if k not in (USERNAME_VAR, PASSWORD_VAR, CREDENTIALS_VAR)}
    return subprocess.run([sys.executable, "-m", "sakdn.cli", *args], env={**clean, **env},
                          input=stdin, capture_output=True, text=True, timeout=120)


@pytest.mark.integration
@pytest.mark.slow
def test_the_server_starts_with_a_random_admin_and_no_default_access(server: Server):
    admin = server.admin_file()
    assert admin.stat().st_mode & 0o777 == 0o600
    user, password = read_credentials(admin)
    assert user == "admin" and len(password) == 32 and password != "password1234"
    config = (server.root / "auth" / "mlflow_auth.ini").read_text()
    assert "default_permission = NO_PERMISSIONS" in config and password not in config
    # the password reached the server through its environment, not its command line
    assert password.encode() not in Path(f"/proc/{server.proc.pid}/cmdline").read_bytes()
    assert server.status("/api/2.0/mlflow/experiments/search?max_results=1",
                         (user, password)) == 200
    # without a login, or with MLflow's old default admin password: refused, read and write
    for login in (None, ("admin", "password1234")):
        assert server.status("/api/2.0/mlflow/experiments/search?max_results=1", login) == 401
        assert server.status("/api/2.0/mlflow/experiments/create", login, "POST",
                             b'{"name": "intruder"}') == 401
        assert server.status("/", login) == 401


@pytest.mark.integration
@pytest.mark.slow
def test_check_login_says_what_is_missing_or_wrong(server: Server, no_login, monkeypatch,
                                                   tmp_path):
    uri = server.uri
    how = (f"set {USERNAME_VAR} and {PASSWORD_VAR}, or {CREDENTIALS_VAR} to an MLflow "
           "credentials file (a cluster's cluster.env sets it)")
    cases = [
        ({}, f"requires a login (HTTP 401) and none is given: {how}"),
        ({USERNAME_VAR: "admin"}, "requires a login (HTTP 401): user 'admin' (from "
         f"{USERNAME_VAR}) has no password: {how}"),
        ({PASSWORD_VAR: "some-password-1"},
         f"requires a login (HTTP 401): a password but no user name is given: {how}"),
        ({USERNAME_VAR: "admin", PASSWORD_VAR: "wrong-password-1"},
         "refused the login of user 'admin' (HTTP 401): wrong user name or password (user "
         f"from {USERNAME_VAR}, password from {PASSWORD_VAR})"),
    ]
    for env, problem in cases:
        with monkeypatch.context() as m:
            for var, value in env.items():
                m.setenv(var, value)
            with pytest.raises(TrackingLoginError) as err:
                check_login(uri)
            assert str(err.value) == f"tracking server {uri}: {problem}"
            assert "wrong-password-1" not in str(err.value)
    monkeypatch.setenv(CREDENTIALS_VAR, str(server.admin_file()))
    login = check_login(uri)
    assert (login.username, login.username_from) == (
        "admin", f"{CREDENTIALS_VAR}={server.admin_file()}")


@pytest.mark.integration
@pytest.mark.slow
def test_the_admin_creates_a_search_user_and_rotates_both_passwords(server: Server, tmp_path):
    search = write_login(tmp_path / "search.credentials", "sakdn-search", "first-password-1")
    as_admin = {CREDENTIALS_VAR: str(server.admin_file())}
    out = sakdn("tracking-user", "--credentials", str(search), "--tracking-uri", server.uri,
                env=as_admin)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == f"created user 'sakdn-search' on {server.uri}"
    read = "/api/2.0/mlflow/experiments/search?max_results=1"
    assert server.status(read, ("sakdn-search", "first-password-1")) == 200
    # the search user is no admin: it cannot make users, and sees no one else's experiment
    out = sakdn("tracking-user", "--credentials", "-", "--tracking-uri", server.uri,
                env={CREDENTIALS_VAR: str(search)},
                stdin="[mlflow]\nmlflow_tracking_username = mallory\n"
                      "mlflow_tracking_password = mallory-password\n")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == (
        f"sakdn: error: tracking server {server.uri}: cannot create user 'mallory': user "
        "'sakdn-search' is not an admin (HTTP 403); log in as the server's admin")
    # rotation: a new file, set by the admin; the old password is refused from then on
    rotated = write_login(tmp_path / "rotated.credentials", "sakdn-search", "second-password-2")
    out = sakdn("tracking-user", "--credentials", str(rotated), env={
        **as_admin, "MLFLOW_TRACKING_URI": server.uri})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == f"set the password of user 'sakdn-search' on {server.uri}"
    assert server.status(read, ("sakdn-search", "first-password-1")) == 401
    assert server.status(read, ("sakdn-search", "second-password-2")) == 200
    for text in (out.stdout, out.stderr):
        assert "second-password-2" not in text and "first-password-1" not in text
    # the admin rotates its own password the same way, then its file is replaced
    old_admin = read_credentials(server.admin_file())
    new_admin = write_login(tmp_path / "admin.credentials", "admin", "new-admin-password-3")
    out = sakdn("tracking-user", "--credentials", str(new_admin), "--tracking-uri", server.uri,
                env=as_admin)
    assert out.returncode == 0, out.stderr[-2000:]
    new_admin.replace(server.admin_file())
    assert server.status(read, old_admin) == 401
    assert server.status(read, ("admin", "new-admin-password-3")) == 200


@pytest.mark.integration
@pytest.mark.slow
def test_a_search_without_a_login_stops_before_it_writes_anything(
    server: Server, no_login, tmp_path, monkeypatch
):
    from sakdn.search.run import run_search

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for var, value in (("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1"), ("RAY_AIR_NEW_OUTPUT", "0"),
                       ("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")):
        monkeypatch.setenv(var, value)  # what run_search sets for itself, undone afterwards
    storage = tmp_path / "store"
    with pytest.raises(TrackingLoginError, match=rf"^tracking server {server.uri}: requires a "
                       "login \\(HTTP 401\\) and none is given"):
        run_search(SMOKE, [f"data.root={tmp_path / 'data'}", f"search.storage_path={storage}",
                           f"search.tracking_uri={server.uri}"])
    assert not storage.exists()  # no study, no Tune state, no trial directory, no cache
