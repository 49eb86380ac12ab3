# Shared checks for the developer scripts: sourced, not run.
# shellcheck shell=bash

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
ADDONS="gobysend_automation,gobysend_channels"

die() {
    echo "error: $*" >&2
    exit 1
}

require_odoo() {
    local version
    version=$("$PYTHON" -c 'import odoo.release as r; print(r.version_info[0])' 2>/dev/null) \
        || die "$PYTHON cannot import Odoo. Install Odoo 18.0 Community from Odoo's official sources (see README.md, 'Installing'), so that '$PYTHON -c \"import odoo\"' works."
    [ "$version" = "18" ] || die "$PYTHON imports Odoo $version, but Gobysend needs Odoo 18.0."
}

# The addons path: ours first, then Odoo's own and the OCA addons installed from PyPI.
addons_path() {
    "$PYTHON" - "$REPO_ROOT" <<'PY'
import os, sys
import odoo.addons
paths = [sys.argv[1]] + [p for p in odoo.addons.__path__ if os.path.isdir(p)]
print(",".join(dict.fromkeys(paths)))
PY
}

require_postgres() {
    command -v psql >/dev/null 2>&1 || die "PostgreSQL is not installed: install PostgreSQL 15 (e.g. 'apt-get install postgresql')."
    if ! pg_isready -q 2>/dev/null; then
        if command -v pg_ctlcluster >/dev/null 2>&1; then
            local cluster
            cluster=$(pg_lsclusters --no-header 2>/dev/null | awk 'NR==1 {print $1" "$2}')
            [ -n "$cluster" ] || die "PostgreSQL is installed but has no cluster: create one with 'pg_createcluster 15 main'."
            echo "Starting PostgreSQL ($cluster)..."
            # shellcheck disable=SC2086
            pg_ctlcluster $cluster start || die "PostgreSQL did not start: see 'pg_lsclusters' and its log."
        fi
        for _ in $(seq 1 30); do pg_isready -q 2>/dev/null && break; sleep 1; done
        pg_isready -q 2>/dev/null || die "PostgreSQL is not running and could not be started: start it, then run this again."
    fi
    # Odoo connects as the current user; make sure PostgreSQL knows it.
    if ! psql -d postgres -Atc 'select 1' >/dev/null 2>&1; then
        if [ "$(id -u)" = "0" ] && id postgres >/dev/null 2>&1; then
            su postgres -c "createuser --superuser $(id -un)" >/dev/null 2>&1 || true
        fi
        psql -d postgres -Atc 'select 1' >/dev/null 2>&1 \
            || die "PostgreSQL refuses user '$(id -un)': create it with 'sudo -u postgres createuser --createdb $(id -un)'."
    fi
}

python_requirements() {
    if ! "$PYTHON" -c 'import fastapi, phonenumbers, pytest_odoo, odoo.addons.fastapi' >/dev/null 2>&1; then
        echo "Installing Python requirements..."
        "$PYTHON" -m pip install --quiet -r "$REPO_ROOT/requirements.txt" || die "could not install requirements.txt."
    fi
}
