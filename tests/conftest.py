"""Fixtures of the end-to-end tests: a real Odoo server on its own database, driven over HTTP.

``setup/run-tests`` prepares the database (both addons installed, no demo data) and exports
its name as ``GOBYSEND_E2E_DB`` and the addons path as ``GOBYSEND_ADDONS_PATH``. The server
commits for real, so every test makes its own workspace and names.
"""

import atexit
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import xmlrpc.client

import pytest
import requests

import odoo

ADMIN_LOGIN = "admin"
ADMIN_PASSWORD = "admin"  # the database is created without demo data: admin keeps Odoo's default
API_ROOT = "/gobysend/api/v1"
REQUEST_TIMEOUT = 30
STARTUP_TIMEOUT = 120
# The tests' stand-ins for providers listen on this machine, which outgoing requests may reach
# only where an administrator allows it (the system parameter below).
ALLOWED_NETWORKS_PARAMETER = "gobysend.outbound_allowed_networks"
LOCAL_TEST_NETWORKS = "127.0.0.0/8, ::1/128"

# ``python3 -m odoo`` leaves ``sys.argv[0]`` pointing at ``odoo/__main__.py``, which the prefork
# server re-runs as a script to spawn its gevent (websocket) process; that fails on a relative
# import. A launcher file that is a proper script avoids it. The master also respawns a gevent
# process that dies at once, every second and at the cost of a full interpreter start: where
# gevent cannot start (a broken environment), the launcher reports why and then idles until the
# master stops it. Neither the tracking API nor these tests use websockets.
LAUNCHER = """\
import signal
import sys
import traceback

gevent_process = sys.argv[1:2] == ["gevent"]  # importing odoo removes the argument
try:
    from odoo.cli.command import main
except Exception:
    if not gevent_process:
        raise
    traceback.print_exc()
    print("The gevent process cannot start; websockets are unavailable.", file=sys.stderr, flush=True)
    signal.pause()
else:
    main()
"""


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OdooServer:
    """An Odoo server subprocess with two HTTP workers; ``stop`` ends it and its children."""

    def __init__(self, database, addons_path, workers=2, db_filter=True, extra_args=()):
        self.database = database
        # With --db-filter, Odoo lists the databases from PostgreSQL on every request that has
        # no session; a single-database server can be pinned with -d alone instead.
        self.db_filter = db_filter
        self.addons_path = addons_path
        self.workers = workers
        self.extra_args = list(extra_args)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.tmpdir = tempfile.TemporaryDirectory(prefix="gobysend_e2e_")
        self.log_path = os.path.join(self.tmpdir.name, "odoo.log")
        self.output_path = os.path.join(self.tmpdir.name, "odoo.out")  # what escapes the log file
        self.process = None
        self.stopped = False

    def command(self):
        launcher = os.path.join(self.tmpdir.name, "odoo_launcher.py")
        with open(launcher, "w") as handle:
            handle.write(LAUNCHER)
        return [
            sys.executable,
            launcher,
            "-d",
            self.database,
            f"--addons-path={self.addons_path}",
            f"--http-port={self.port}",
            "--http-interface=127.0.0.1",
            f"--workers={self.workers}",
            f"--gevent-port={free_port()}",
            "--max-cron-threads=0",
            *([f"--db-filter=^{self.database}$"] if self.db_filter else []),
            "--log-level=warn",
            f"--logfile={self.log_path}",
            *self.extra_args,
        ]

    def start(self):
        with open(self.output_path, "wb") as output:
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so that stop() reaches the workers
            )
        # Should the caller die on an unexpected error, the server must not outlive it.
        atexit.register(self.stop)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"Odoo exited with code {self.process.returncode} while starting.\n{self.log_tail()}"
                )
            try:
                response = requests.get(self.base_url + "/web/health", timeout=2)
                if response.status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"Odoo did not answer /web/health within {STARTUP_TIMEOUT}s.\n{self.log_tail()}")

    def stop(self):
        if self.process is None or self.stopped:
            return
        self.stopped = True  # the group id may be reused once it is gone: signal it only now
        if self.process.poll() is not None:
            self._kill_group(signal.SIGKILL)
            return
        self._kill_group(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._kill_group(signal.SIGKILL)
            self.process.wait(timeout=10)
        # Workers and the gevent process may outlive the master by a moment.
        self._kill_group(signal.SIGKILL)

    def _kill_group(self, sig):
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def log_tail(self, lines=200):
        tails = []
        for path in (self.output_path, self.log_path):
            try:
                with open(path, errors="replace") as handle:
                    tails.append("".join(handle.readlines()[-lines:]))
            except OSError:
                tails.append(f"(no {os.path.basename(path)})")
        return "\n".join(tails)

    def cleanup(self):
        self.tmpdir.cleanup()


class TimeoutTransport(xmlrpc.client.Transport):
    def make_connection(self, host):
        connection = super().make_connection(host)
        connection.timeout = REQUEST_TIMEOUT
        return connection


class Rpc:
    """XML-RPC ``execute_kw`` for one user; ``call`` raises ``xmlrpc.client.Fault`` on errors."""

    def __init__(self, base_url, database, login, password):
        self.database = database
        self.password = password
        common = xmlrpc.client.ServerProxy(f"{base_url}/xmlrpc/2/common", allow_none=True, transport=TimeoutTransport())
        self.uid = common.authenticate(database, login, password, {})
        if not self.uid:
            raise RuntimeError(f"XML-RPC login failed for {login}")
        self.models = xmlrpc.client.ServerProxy(
            f"{base_url}/xmlrpc/2/object", allow_none=True, transport=TimeoutTransport()
        )

    def call(self, model, method, *args, **kwargs):
        return self.models.execute_kw(self.database, self.uid, self.password, model, method, list(args), kwargs)

    def xmlid(self, xmlid):
        module, name = xmlid.split(".")
        (data,) = self.call(
            "ir.model.data", "search_read", [("module", "=", module), ("name", "=", name)], fields=["res_id"]
        )
        return data["res_id"]


class Api:
    """A client of the tracking API holding one workspace's key."""

    def __init__(self, base_url, key):
        self.base_url = base_url
        self.url = base_url + API_ROOT
        self.key = key
        self.session = requests.Session()

    def request(self, method, path, payload=None, key=None, **kwargs):
        key = self.key if key is None else key
        headers = kwargs.pop("headers", {})
        if key:
            headers["Authorization"] = f"Bearer {key}"
        kwargs.setdefault("timeout", REQUEST_TIMEOUT)
        if payload is not None:
            kwargs["json"] = payload
        return self.session.request(method, self.url + path, headers=headers, **kwargs)

    def post(self, path, payload=None, **kwargs):
        return self.request("POST", path, payload, **kwargs)

    def clone(self):
        """The same key on a session of its own, for use from another thread."""
        return Api(self.base_url, self.key)


@pytest.fixture(scope="session")
def odoo_server(request):
    database = os.environ.get("GOBYSEND_E2E_DB")
    addons_path = os.environ.get("GOBYSEND_ADDONS_PATH")
    if not database or not addons_path:
        pytest.skip("end-to-end tests need a prepared database: run them through setup/run-tests")
    server = OdooServer(database, addons_path)
    try:
        server.start()
    except RuntimeError:
        server.cleanup()
        raise
    Rpc(server.base_url, database, ADMIN_LOGIN, ADMIN_PASSWORD).call(
        "ir.config_parameter", "set_param", ALLOWED_NETWORKS_PARAMETER, LOCAL_TEST_NETWORKS
    )
    yield server
    server.stop()
    if request.session.testsfailed:
        # Print the server's side of the story next to the failures.
        sys.stderr.write(f"\n----- Odoo server log ({server.log_path}) -----\n{server.log_tail()}\n")
    server.cleanup()


@pytest.fixture(scope="module")
def start_odoo_server():
    """Start servers on other databases than the end-to-end one (``start(database)`` returns an
    ``OdooServer``, with ``admin``, an ``Rpc`` as admin); they stop with the module."""
    servers = []

    def start(database):
        server = OdooServer(database, os.environ["GOBYSEND_ADDONS_PATH"])
        servers.append(server)
        server.start()
        server.admin = Rpc(server.base_url, database, ADMIN_LOGIN, ADMIN_PASSWORD)
        server.admin.call("ir.config_parameter", "set_param", ALLOWED_NETWORKS_PARAMETER, LOCAL_TEST_NETWORKS)
        return server

    yield start
    for server in servers:
        server.stop()
        server.cleanup()


@pytest.fixture(scope="session")
def registry():
    """The end-to-end database's registry, for tests that commit through the ORM themselves,
    with the local sinks' networks allowed as an administrator would allow them."""
    database = os.environ.get("GOBYSEND_E2E_DB")
    if not database:
        pytest.skip("end-to-end tests need a prepared database: run them through setup/run-tests")
    # Loading a registry in test mode would run the addons' own tests on it.
    test_enable = odoo.tools.config["test_enable"]
    odoo.tools.config["test_enable"] = False
    try:
        registry = odoo.modules.registry.Registry(database)
    finally:
        odoo.tools.config["test_enable"] = test_enable
    with registry.cursor() as cr:
        odoo.api.Environment(cr, odoo.SUPERUSER_ID, {})["ir.config_parameter"].set_param(
            ALLOWED_NETWORKS_PARAMETER, LOCAL_TEST_NETWORKS
        )
    return registry


@pytest.fixture
def sink_workspace(registry):
    """Committed data of the exactly-once tests, removed afterwards: ``make(env, smtp_port,
    count, name, channel_values, **workspace_values)`` creates a workspace without quiet hours,
    an email channel sending through a mail server at the local SMTP sink on ``smtp_port``, and
    ``count`` subscribed contacts; it returns (workspace, channel, partners)."""
    created = {}

    def make(env, smtp_port, count, name, channel_values=None, **workspace_values):
        tag = uuid.uuid4().hex[:8]
        mail_server = env["ir.mail_server"].create(
            {
                "name": f"Sink {tag}",
                "smtp_host": "127.0.0.1",
                "smtp_port": smtp_port,
                "smtp_encryption": "none",
                "sequence": 1,
            }
        )
        created["mail_server"] = mail_server.id
        workspace = env["gobysend.workspace"].create(
            {"name": f"{name} {tag}", "tz": "UTC", "quiet_hours_start": 0, "quiet_hours_end": 0, **workspace_values}
        )
        created["workspace"] = workspace.id
        channel = env["gobysend.channel"].create(
            {
                "name": "Mail",
                "workspace_id": workspace.id,
                "channel_type": "email",
                "provider": "email",
                "state": "enabled",
                "token_cost": 0,
                "rate_limit": 0,
                "sender": "shop@example.com",
                **(channel_values or {}),
            }
        )
        partners = env["res.partner"].create(
            [{"name": f"Contact {tag} {index}", "email": f"c{index}.{tag}@example.com"} for index in range(count)]
        )
        created["partners"] = partners.ids
        env["gobysend.subscription"].create([{"workspace_id": workspace.id, "partner_id": p.id} for p in partners])
        return workspace, channel, partners

    yield make
    with registry.cursor() as cr:
        env = odoo.api.Environment(cr, odoo.SUPERUSER_ID, {})
        if "workspace" in created:
            # The campaigns' steps hold the channel: the campaigns go first.
            env["gobysend.campaign"].with_context(active_test=False).search(
                [("workspace_id", "=", created["workspace"])]
            ).unlink()
            env["mail.mail"].search([("gobysend_message_id.workspace_id", "=", created["workspace"])]).unlink()
            env["gobysend.workspace"].browse(created["workspace"]).unlink()
        env["res.partner"].browse(created.get("partners", [])).unlink()
        env["ir.mail_server"].browse(created.get("mail_server", [])).unlink()


@pytest.fixture(scope="session")
def base_url(odoo_server):
    return odoo_server.base_url


@pytest.fixture(scope="session")
def admin(odoo_server):
    return Rpc(odoo_server.base_url, odoo_server.database, ADMIN_LOGIN, ADMIN_PASSWORD)


@pytest.fixture(scope="session")
def make_rpc(odoo_server):
    def make(login, password):
        return Rpc(odoo_server.base_url, odoo_server.database, login, password)

    return make


@pytest.fixture
def server_log(odoo_server):
    """Reads what the server logged since the test began."""
    with open(odoo_server.log_path, "rb") as handle:
        start = handle.seek(0, 2)

    def read():
        with open(odoo_server.log_path, "rb") as handle:
            handle.seek(start)
            return handle.read().decode(errors="replace")

    return read


@pytest.fixture
def unique():
    """A short random suffix for names that must not clash between tests and runs."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def make_workspace(admin, base_url):
    """Create a workspace (as admin, over XML-RPC) and return (workspace id, Api with a fresh key)."""

    def make(name=None, **values):
        workspace_id = admin.call(
            "gobysend.workspace", "create", {"name": name or f"E2E {uuid.uuid4().hex[:8]}", **values}
        )
        key = admin.call("gobysend.workspace", "api_key_create", [workspace_id], "E2E key")
        return workspace_id, Api(base_url, key)

    return make
