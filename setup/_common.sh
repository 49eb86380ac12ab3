# Shared steps of the developer scripts: sourced, not run.
# shellcheck shell=bash
#
# `ensure_environment` takes a machine that has only Python 3 and a Debian/Ubuntu package manager
# to one that runs Gobysend: PostgreSQL (installed and started), Odoo 18.0 Community (the one
# `python3` already imports, or one installed into the project's .venv/) and requirements.txt.
# Everything installed is reused by the next run, which therefore starts in seconds.
#
# Settings (environment variables):
#   ODOO_SOURCE     a local Odoo 18 source tree or source archive (.tar.gz, .tgz, .zip) to install
#                   into .venv/ instead of Odoo's official nightly source archive. When set, the
#                   virtual environment is used even if python3 already imports an Odoo.
#   GOBYSEND_VENV   where the virtual environment lives (default: .venv/ in the repository).
#   GOBYSEND_VENV_SYSTEM_PACKAGES=1
#                   let the virtual environment see the system's Python packages and reuse those
#                   that Odoo needs instead of installing its pinned versions (works offline when
#                   the system Python already has them).
#   PYTHON          a Python that imports Odoo 18; skips every Odoo installation step.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ADDONS="gobysend_automation,gobysend_channels"
VENV_DIR="${GOBYSEND_VENV:-$REPO_ROOT/.venv}"
ODOO_NIGHTLY_ARCHIVE="https://nightly.odoo.com/18.0/nightly/src/odoo_18.0.latest.tar.gz"
# Build dependencies of Odoo's pinned psycopg2 and python-ldap, which have no wheels for every Python.
ODOO_BUILD_PACKAGES=(gcc python3-dev libpq-dev libldap2-dev libsasl2-dev)

die() {
    echo "error: $*" >&2
    exit 1
}

STEP_STARTED=0
step() {
    STEP_STARTED=$SECONDS
    echo "==> $*"
}
step_done() {
    echo "    done in $((SECONDS - STEP_STARTED)) s"
}

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
    if [ "$(id -u)" = "0" ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        return 1
    fi
}

# Installs the Debian packages among the arguments that are not installed yet.
apt_install() {
    local missing=() package
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 \
        || die "these system packages are missing and this machine has no apt-get: ${missing[*]}. Install them, then run this again."
    step "Installing system packages: ${missing[*]}"
    as_root apt-get update -qq >/dev/null \
        && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
        || die "could not install ${missing[*]} (run this as root or with sudo, or install them yourself)."
    step_done
}

odoo_major() {
    "$1" -c 'import odoo.release as r; print(r.version_info[0])' 2>/dev/null
}

# Sets PYTHON to a Python that imports Odoo 18, installing Odoo into the virtual environment
# when no such Python is there yet.
ensure_odoo() {
    if [ -n "${PYTHON:-}" ]; then
        [ "$(odoo_major "$PYTHON")" = "18" ] || die "PYTHON=$PYTHON does not import Odoo 18.0."
        return 0
    fi
    if [ -z "${ODOO_SOURCE:-}" ] && [ "$(odoo_major python3)" = "18" ]; then
        PYTHON=python3
        return 0
    fi
    if [ "$(odoo_major "$VENV_DIR/bin/python")" = "18" ]; then
        PYTHON="$VENV_DIR/bin/python"
        register_odoo_distribution "$PYTHON"
        return 0
    fi
    install_odoo_venv
    PYTHON="$VENV_DIR/bin/python"
}

# Records the Odoo of the virtual environment (a source tree on its path) as the installed
# distribution "odoo", as an editable install would: the OCA addons of requirements.txt
# require odoo==18.0.*, and pip refuses them without it.
register_odoo_distribution() {
    "$1" - <<'PY' || die "could not record Odoo as installed in $1's environment."
import os, sysconfig
from importlib import metadata
import odoo.release as release
try:
    metadata.version("odoo")
except metadata.PackageNotFoundError:
    version = release.major_version
    info = os.path.join(sysconfig.get_paths()["purelib"], f"odoo-{version}.dist-info")
    os.makedirs(info, exist_ok=True)
    with open(os.path.join(info, "METADATA"), "w") as handle:
        handle.write(f"Metadata-Version: 2.1\nName: odoo\nVersion: {version}\n")
    with open(os.path.join(info, "INSTALLER"), "w") as handle:
        handle.write("gobysend-setup\n")
    open(os.path.join(info, "RECORD"), "w").close()
PY
}

# Finds the Odoo 18 source tree to install: ODOO_SOURCE (a tree or an archive), else Odoo's
# official nightly source archive. Prints the tree's path.
odoo_source_tree() {
    local archive tree
    if [ -n "${ODOO_SOURCE:-}" ] && [ -d "$ODOO_SOURCE" ]; then
        tree="$(cd "$ODOO_SOURCE" && pwd)"
    else
        mkdir -p "$VENV_DIR/src"
        if [ -n "${ODOO_SOURCE:-}" ]; then
            [ -f "$ODOO_SOURCE" ] || die "ODOO_SOURCE=$ODOO_SOURCE is neither a folder nor a file."
            archive="$ODOO_SOURCE"
        else
            archive="$VENV_DIR/src/odoo_18.0.latest.tar.gz"
            if [ ! -s "$archive" ]; then
                step "Downloading Odoo 18.0 Community from Odoo's nightly source archive" >&2
                python3 - "$ODOO_NIGHTLY_ARCHIVE" "$archive.part" <<'PY' >&2 || die "could not download $ODOO_NIGHTLY_ARCHIVE: check the network, or set ODOO_SOURCE to a local Odoo 18 source tree or archive."
import shutil, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=60) as answer, open(sys.argv[2], "wb") as out:
    shutil.copyfileobj(answer, out, 1 << 20)
PY
                mv "$archive.part" "$archive"
                step_done >&2
            fi
        fi
        step "Unpacking $(basename "$archive")" >&2
        rm -rf "$VENV_DIR/src/tree" && mkdir -p "$VENV_DIR/src/tree"
        python3 -m zipfile -e "$archive" "$VENV_DIR/src/tree" 2>/dev/null \
            || tar -xf "$archive" -C "$VENV_DIR/src/tree" \
            || die "could not unpack $archive."
        step_done >&2
        tree="$(dirname "$(dirname "$(find "$VENV_DIR/src/tree" -maxdepth 3 -path '*/odoo/release.py' | head -n 1)")")"
    fi
    grep -qE '^version_info = \(18, ' "$tree/odoo/release.py" 2>/dev/null \
        || die "$tree is not an Odoo 18.0 source tree (no odoo/release.py of version 18)."
    echo "$tree"
}

install_odoo_venv() {
    local tree site_packages venv_options=() reuse=()
    local started=$SECONDS
    command -v python3 >/dev/null 2>&1 || die "python3 is not installed."
    python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
    if [ "${GOBYSEND_VENV_SYSTEM_PACKAGES:-}" = "1" ]; then
        venv_options=(--system-site-packages)
        reuse=(--reuse-installed)
    fi
    tree="$(odoo_source_tree)"
    echo "Installing Odoo 18.0 from $tree into $VENV_DIR"

    step "Creating the virtual environment"
    rm -rf "$VENV_DIR/bin" "$VENV_DIR/lib" "$VENV_DIR/include" "$VENV_DIR/pyvenv.cfg"
    python3 -m venv "${venv_options[@]}" "$VENV_DIR" || die "could not create the virtual environment $VENV_DIR."
    step_done

    local pip_constraints="$VENV_DIR/pip-constraints.txt"
    # Some of Odoo's pinned dependencies build from source with setup.py files that import
    # pkg_resources, which setuptools 81 removed; gevent 22 reads its plugins through
    # pkg_resources too, and setuptools older than 70 cannot find zope.interface's current
    # distribution there, so Odoo's gevent process would die and be restarted every second.
    echo "setuptools>=70,<81" >"$pip_constraints"
    export PIP_CONSTRAINT="$pip_constraints" PIP_DISABLE_PIP_VERSION_CHECK=1
    if [ ${#reuse[@]} -eq 0 ]; then
        apt_install "${ODOO_BUILD_PACKAGES[@]}"
        step "Installing setuptools and wheel"
        "$VENV_DIR/bin/python" -m pip install --quiet "setuptools>=70,<81" wheel \
            || die "could not install setuptools into $VENV_DIR."
        step_done
    fi

    step "Installing Odoo's Python dependencies (the first time takes a few minutes)"
    "$VENV_DIR/bin/python" "$REPO_ROOT/setup/odoo_requirements.py" "${reuse[@]}" "$tree/requirements.txt" \
        >"$VENV_DIR/odoo-requirements.txt" || die "could not read $tree/requirements.txt."
    "$VENV_DIR/bin/python" -m pip install --quiet -r "$VENV_DIR/odoo-requirements.txt" \
        || die "installing Odoo's Python dependencies failed (pip's message above); fix what it names and run this again."
    step_done

    step "Installing Odoo"
    site_packages="$("$VENV_DIR/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    # The source tree itself is put on the path, as an editable install would: nothing is copied.
    echo "$tree" >"$site_packages/odoo-source.pth"
    cat >"$VENV_DIR/bin/odoo" <<LAUNCHER
#!$VENV_DIR/bin/python
import odoo

odoo.cli.main()
LAUNCHER
    chmod +x "$VENV_DIR/bin/odoo"
    [ "$(odoo_major "$VENV_DIR/bin/python")" = "18" ] || die "Odoo was installed into $VENV_DIR but does not import."
    register_odoo_distribution "$VENV_DIR/bin/python"
    step_done
    echo "Odoo 18.0 is installed in $VENV_DIR ($((SECONDS - started)) s)."
}

# The addons path: ours first, then Odoo's own (in a source tree, also its addons/ folder) and
# the OCA addons installed from PyPI.
addons_path() {
    "$PYTHON" - "$REPO_ROOT" <<'PY'
import os, sys
import odoo, odoo.addons
tree_addons = os.path.join(os.path.dirname(os.path.dirname(odoo.__file__)), "addons")
paths = [sys.argv[1]] + [p for p in odoo.addons.__path__ if os.path.isdir(p)]
if os.path.isdir(os.path.join(tree_addons, "web")):
    paths.append(tree_addons)
print(",".join(dict.fromkeys(os.path.abspath(p) for p in paths)))
PY
}

ensure_postgres() {
    if ! command -v psql >/dev/null 2>&1; then
        apt_install postgresql postgresql-client
        command -v psql >/dev/null 2>&1 || die "PostgreSQL was installed but psql is not on the PATH."
    fi
    if ! pg_isready -q 2>/dev/null; then
        if command -v pg_ctlcluster >/dev/null 2>&1; then
            local cluster
            cluster=$(pg_lsclusters --no-header 2>/dev/null | awk 'NR==1 {print $1" "$2}')
            if [ -z "$cluster" ]; then
                local version
                version=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1)
                [ -n "$version" ] || die "PostgreSQL is installed but has no server: install the postgresql package."
                step "Creating the PostgreSQL cluster $version main"
                as_root pg_createcluster "$version" main >/dev/null || die "could not create a PostgreSQL cluster."
                step_done
                cluster="$version main"
            fi
            echo "Starting PostgreSQL ($cluster)..."
            # shellcheck disable=SC2086
            as_root pg_ctlcluster $cluster start || die "PostgreSQL did not start: see 'pg_lsclusters' and its log."
        fi
        for _ in $(seq 1 30); do pg_isready -q 2>/dev/null && break; sleep 1; done
        pg_isready -q 2>/dev/null || die "PostgreSQL is not running and could not be started: start it, then run this again."
    fi
    # Odoo connects as the current user; make sure PostgreSQL knows it.
    if ! psql -d postgres -Atc 'select 1' >/dev/null 2>&1; then
        if id postgres >/dev/null 2>&1; then
            as_root su postgres -c "createuser --superuser $(id -un)" >/dev/null 2>&1 || true
        fi
        psql -d postgres -Atc 'select 1' >/dev/null 2>&1 \
            || die "PostgreSQL refuses user '$(id -un)': create it with 'sudo -u postgres createuser --createdb $(id -un)'."
    fi
}

python_requirements() {
    # What requirements.txt brings, down to the test client that Odoo's test runner imports.
    if ! "$PYTHON" -c 'import httpx2, fastapi.testclient, phonenumbers, pytest_odoo, hypothesis, time_machine, odoo.addons.fastapi, odoo.addons.queue_job' >/dev/null 2>&1; then
        step "Installing requirements.txt"
        "$PYTHON" -m pip install --quiet -r "$REPO_ROOT/requirements.txt" || die "could not install requirements.txt."
        step_done
    fi
}

# What both commands need: PostgreSQL running, Odoo 18 and our requirements.
ensure_environment() {
    ensure_postgres
    ensure_odoo
    python_requirements
}
