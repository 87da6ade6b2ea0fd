"""The login of the project's MLflow clients, and the check that a search can log in.

Every tracking server the project starts runs MLflow's basic-auth app (``docs/cluster.md``,
"Security"). A client logs in with MLflow's own variables ``MLFLOW_TRACKING_USERNAME`` and
``MLFLOW_TRACKING_PASSWORD`` (what a Kubernetes Secret or a job's runtime environment sets).
Where one of them is unset, the credentials file that ``SAKDN_MLFLOW_CREDENTIALS`` names fills
it in: MLflow's own credentials-file format, mode 600, what a cluster's ``cluster.env`` and
every Ray process of the cluster carry, as ``RAY_AUTH_TOKEN_PATH`` carries the Ray token. A
path travels through environments and logs; the password stays in the file and, once read,
in this process's environment, where MLflow's client looks for it.

The password is never passed on, logged, stored or put in a message by this module.
"""

from __future__ import annotations

import configparser
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sakdn.errors import TrackingLoginError

USERNAME_VAR = "MLFLOW_TRACKING_USERNAME"
PASSWORD_VAR = "MLFLOW_TRACKING_PASSWORD"
CREDENTIALS_VAR = "SAKDN_MLFLOW_CREDENTIALS"
SECTION = "mlflow"  # MLflow's credentials file: [mlflow] with the two keys below
USERNAME_KEY, PASSWORD_KEY = USERNAME_VAR.lower(), PASSWORD_VAR.lower()
CHECK_ENDPOINT = "/api/2.0/mlflow/experiments/search"  # any read: a server without auth answers


@dataclass(frozen=True)
class Login:
    """Who this process logs in as, and where each part came from (for messages)."""

    username: str | None
    has_password: bool
    username_from: str = ""  # the variable or file it came from
    password_from: str = ""


def is_server(uri: str) -> bool:
    """Whether ``uri`` names a tracking server (local stores need no login)."""
    return uri.startswith(("http://", "https://"))


def read_credentials(source: str | Path) -> tuple[str, str]:
    """(username, password) of an MLflow credentials file (``-``: stdin).

    Raises TrackingLoginError naming the file when it cannot be read or lacks either key.
    """
    parser = configparser.ConfigParser(interpolation=None)
    where = "stdin" if str(source) == "-" else f"the credentials file {source}"
    try:
        if str(source) == "-":
            parser.read_string(sys.stdin.read())
        else:
            with open(source) as handle:
                parser.read_file(handle)
    except (OSError, UnicodeDecodeError, configparser.Error) as err:
        raise TrackingLoginError(None, f"cannot read {where} ({type(err).__name__})") from None
    section = parser[SECTION] if parser.has_section(SECTION) else {}
    username, password = section.get(USERNAME_KEY, ""), section.get(PASSWORD_KEY, "")
    if not username or not password:
        raise TrackingLoginError(None, f"{where} lacks [{SECTION}] {USERNAME_KEY} and "
                                       f"{PASSWORD_KEY}")
    return username, password


def use_credentials(uri: str | None = None) -> Login:
    """Fill MLflow's login variables from ``SAKDN_MLFLOW_CREDENTIALS`` where they are unset.

    A variable already set wins over the file (a job's runtime environment can override one
    part of the login). Returns who this process now logs in as; a credentials file that
    cannot be used raises TrackingLoginError naming it (and ``uri``).
    """
    given = {var: var for var in (USERNAME_VAR, PASSWORD_VAR) if os.environ.get(var)}
    path = os.environ.get(CREDENTIALS_VAR, "")
    if path and len(given) < 2:
        try:
            values = dict(zip((USERNAME_VAR, PASSWORD_VAR), read_credentials(path)))
        except TrackingLoginError as err:
            raise TrackingLoginError(uri, f"{CREDENTIALS_VAR}: {err.problem}") from None
        for var in (USERNAME_VAR, PASSWORD_VAR):
            if var not in given:
                os.environ[var] = values[var]
                given[var] = f"{CREDENTIALS_VAR}={path}"
    from mlflow.utils.credentials import read_mlflow_creds

    creds = read_mlflow_creds()  # the environment, else MLflow's ~/.mlflow/credentials
    home = "~/.mlflow/credentials"
    return Login(creds.username or None, bool(creds.password),
                 given.get(USERNAME_VAR, home), given.get(PASSWORD_VAR, home))


def check_login(uri: str) -> Login:
    """Make sure the tracking server at ``uri`` accepts this process's login.

    Run by the search driver before anything starts: missing or wrong credentials end the
    search with one :class:`TrackingLoginError` naming the server and what is missing,
    instead of a failure in every trial. Local stores need no login and pass.
    """
    if not is_server(uri):
        return Login(None, False)
    if urlsplit(uri).password:
        raise TrackingLoginError(_redacted(uri), "the URI holds a password, which would be "
                                 f"printed and stored with the search; set {PASSWORD_VAR} or "
                                 f"{CREDENTIALS_VAR} instead")
    login = use_credentials(uri)
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        response = http_request(get_default_host_creds(uri), CHECK_ENDPOINT, "GET",
                                max_retries=0, timeout=20, params={"max_results": 1})
    except Exception as err:  # refused, unresolvable, timed out
        raise TrackingLoginError(uri, f"does not answer ({_first_line(err)})") from None
    if response.status_code == 401:
        raise TrackingLoginError(uri, _refused(login))
    if response.status_code == 403:
        raise TrackingLoginError(uri, f"user {login.username!r} may not read experiments "
                                      "(HTTP 403): an admin of the server grants it")
    return login


def _refused(login: Login) -> str:
    """What a 401 means for this login: what is missing, or that it is wrong."""
    how = (f"set {USERNAME_VAR} and {PASSWORD_VAR}, or {CREDENTIALS_VAR} to an MLflow "
           "credentials file (a cluster's cluster.env sets it)")
    if login.username is None and not login.has_password:
        return f"requires a login (HTTP 401) and none is given: {how}"
    if login.username is None:
        return f"requires a login (HTTP 401): a password but no user name is given: {how}"
    if not login.has_password:
        return (f"requires a login (HTTP 401): user {login.username!r} (from "
                f"{login.username_from}) has no password: {how}")
    return (f"refused the login of user {login.username!r} (HTTP 401): wrong user name or "
            f"password (user from {login.username_from}, password from {login.password_from})")


def set_user(uri: str, username: str, password: str) -> bool:
    """Create ``username`` (not an admin) with ``password``, or set its password if it exists.

    Logs in as this process's login, which must be an admin of the server (an admin that
    rotates its own password gives its current one, as MLflow asks). Returns whether the user
    was created.
    """
    from mlflow.exceptions import MlflowException, RestException
    from mlflow.server import get_app_client
    from mlflow.utils.credentials import read_mlflow_creds

    login = check_login(uri)
    admin = get_app_client("basic-auth", tracking_uri=uri)
    try:
        admin.create_user(username, password)
        return True
    except MlflowException as err:
        if not (isinstance(err, RestException) and err.error_code == "RESOURCE_ALREADY_EXISTS"):
            raise _admin_error(uri, login, f"cannot create user {username!r}", err) from None
    own = read_mlflow_creds().password if username == login.username else None
    try:
        admin.update_user_password(username, password, current_password=own)
    except MlflowException as err:
        raise _admin_error(uri, login, f"cannot set the password of user {username!r}",
                           err) from None
    return False


def _admin_error(uri: str, login: Login, what: str, err: Exception) -> TrackingLoginError:
    if getattr(err, "get_http_status_code", lambda: 0)() == 403:
        return TrackingLoginError(uri, f"{what}: user {login.username!r} is not an admin "
                                       "(HTTP 403); log in as the server's admin")
    return TrackingLoginError(uri, f"{what}: {_first_line(err)}")


def _redacted(uri: str) -> str:
    parts = urlsplit(uri)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.username}:***@{host}{port}{parts.path}"


def _first_line(err: Exception) -> str:
    """The first line of an error, shortened in the middle (its cause is at the end)."""
    text = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return text if len(text) <= 300 else f"{text[:150]} ... {text[-140:]}"
