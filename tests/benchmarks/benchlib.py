"""What the benchmarks share: scratch databases with both addons, and the end-to-end tests'
Odoo server fixture (a real multi-worker server on a free port)."""

import importlib.util
import os
import subprocess
import sys

import psycopg2

import odoo

import odoo.addons

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ADDONS = "gobysend_automation,gobysend_channels"


def load_fixtures():
    """The end-to-end tests' server and XML-RPC helpers, under a name that clashes with nothing."""
    spec = importlib.util.spec_from_file_location(
        "gobysend_e2e_fixtures", os.path.join(REPO_ROOT, "tests", "conftest.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def addons_path():
    # Once Odoo's configuration is parsed, its data directory joins odoo.addons.__path__; it
    # may not exist yet and holds no addon of ours.
    data_dir = odoo.tools.config["data_dir"]
    paths = [REPO_ROOT] + [
        path for path in odoo.addons.__path__ if os.path.isdir(path) and not path.startswith(data_dir)
    ]
    return ",".join(dict.fromkeys(paths))


def admin_connection():
    return psycopg2.connect(dbname="postgres")


def create_database(name, template=None, modules=ADDONS):
    """A scratch database: a copy of ``template``, or a new one with ``modules`` installed."""
    if template:
        connection = admin_connection()
        connection.autocommit = True
        with connection.cursor() as cr:
            cr.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        connection.close()
        return
    command = [
        sys.executable,
        "-m",
        "odoo",
        "-d",
        name,
        f"--addons-path={addons_path()}",
        "-i",
        modules,
        "--without-demo=all",
        "--stop-after-init",
        "--log-level=warn",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False)
    if result.returncode:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise SystemExit(f"Installing {modules} on {name} failed.")


def drop_database(name):
    connection = admin_connection()
    connection.autocommit = True
    with connection.cursor() as cr:
        cr.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    connection.close()


def vacuum_analyze(dbname, *tables):
    """``VACUUM ANALYZE`` of ``tables`` (the whole database without any): what autovacuum has
    done to freshly loaded rows by the time real work reads them (hint bits, visibility map,
    statistics)."""
    connection = psycopg2.connect(dbname=dbname)
    connection.autocommit = True
    with connection.cursor() as cr:
        for table in tables or (None,):
            cr.execute(f"VACUUM ANALYZE {table}" if table else "VACUUM ANALYZE")
    connection.close()


def percentile(sorted_values, fraction):
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def stop_server(server):
    """Stop a benchmark's Odoo server, showing the tail of its log when it logged errors."""
    server.stop()
    log = server.log_tail(40)
    if "ERROR" in log or "CRITICAL" in log:
        print("\nServer log (tail):\n" + log)
    server.cleanup()


def release_database(database, keep):
    """Drop the scratch database, or say where it was kept."""
    if keep:
        print(f"Kept database {database}")
    else:
        drop_database(database)
        print(f"Dropped database {database}")
