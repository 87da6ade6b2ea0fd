#!/usr/bin/env bash
# Run an MLflow tracking server with MLflow's authentication (its basic-auth app), configured
# from a directory that holds the server's secrets:
#
#   cluster/mlflow-auth.sh DIR -- mlflow server --app-name basic-auth [server options]
#
#   DIR/mlflow_admin.credentials  the admin's login (user admin), in MLflow's credentials-file
#                                 format, mode 600: made with a random password when missing,
#                                 so the server never has an admin with a known password
#   DIR/mlflow_auth.ini           the auth app's configuration, made when missing (edit it to
#                                 keep users elsewhere): users and permissions in
#                                 DIR/mlflow_auth.db; default_permission NO_PERMISSIONS, so a
#                                 user sees only what it made or was granted. No secret in it.
#
# The admin password reaches the server through its environment (MLFLOW_AUTH_ADMIN_PASSWORD,
# which MLflow reads only to create the admin in an empty user store), never its command line.
# The Flask secret key that guards MLflow's sign-up form is random per start.
# Used by cluster/local/mlflow-server.sh and by the cloud heads (cluster/aws.yaml, gcp.yaml).
set -euo pipefail

die() { echo "mlflow-auth.sh: error: $*" >&2; exit 2; }
[[ $# -ge 3 && "$2" == "--" ]] \
    || die "usage: mlflow-auth.sh DIR -- mlflow server --app-name basic-auth ..."
DIR="$1"
shift 2
[[ " $* " == *" --app-name basic-auth "* || " $* " == *" --app-name=basic-auth "* ]] \
    || die "the command must run MLflow's basic-auth app (--app-name basic-auth): $1 ..."
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
ADMIN="$DIR/mlflow_admin.credentials"
CONFIG="$DIR/mlflow_auth.ini"

if [[ ! -f "$ADMIN" ]]; then
    [[ ! -f "$DIR/mlflow_auth.db" ]] || die "$DIR/mlflow_auth.db holds users but $ADMIN is" \
        "gone: restore it (a new admin password would not be the stored one)"
    login='[mlflow]\nmlflow_tracking_username = %s\nmlflow_tracking_password = %s\n'
    (umask 077 && printf "$login" admin "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" >"$ADMIN")
fi
if [[ ! -f "$CONFIG" ]]; then
    printf '%s\n' '[mlflow]' 'default_permission = NO_PERMISSIONS' \
        "database_uri = sqlite:///$DIR/mlflow_auth.db" 'admin_username = admin' \
        'authorization_function = mlflow.server.auth:authenticate_request_basic_auth' \
        >"$CONFIG"
fi
field() { sed -n "s/^mlflow_tracking_$1 *= *//p" "$ADMIN"; }
MLFLOW_AUTH_ADMIN_USERNAME="$(field username)"
MLFLOW_AUTH_ADMIN_PASSWORD="$(field password)"
[[ -n "$MLFLOW_AUTH_ADMIN_USERNAME" && -n "$MLFLOW_AUTH_ADMIN_PASSWORD" ]] \
    || die "$ADMIN lacks mlflow_tracking_username or mlflow_tracking_password"
MLFLOW_FLASK_SERVER_SECRET_KEY="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
export MLFLOW_AUTH_CONFIG_PATH="$CONFIG" MLFLOW_AUTH_ADMIN_USERNAME MLFLOW_AUTH_ADMIN_PASSWORD \
    MLFLOW_FLASK_SERVER_SECRET_KEY
unset MLFLOW_TRACKING_USERNAME MLFLOW_TRACKING_PASSWORD SAKDN_MLFLOW_CREDENTIALS
exec "$@"
