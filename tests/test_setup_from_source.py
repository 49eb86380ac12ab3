"""From an Odoo source tree to a served demo, with the README's own command.

``setup/run-demo`` is run with ``ODOO_SOURCE`` naming the source tree of the Odoo this machine
already has and a virtual environment of its own in a temporary folder: it must install Odoo
there (seeing the system's packages, so that no network is needed), create a scratch database
with both addons and their demo data, and serve it. The test then uses the printed API key on the
served API, and runs the set-up a second time to see that nothing is installed again.
"""

import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import pytest
import requests

import odoo

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STARTUP_TIMEOUT = 900  # installing both addons with their demo data on a busy machine


def odoo_source_tree():
    """ODOO_SOURCE when set, else the source tree the running Odoo is imported from."""
    if os.environ.get("ODOO_SOURCE"):
        return os.environ["ODOO_SOURCE"]
    tree = os.path.dirname(os.path.dirname(os.path.abspath(odoo.__file__)))
    if not os.path.isfile(os.path.join(tree, "requirements.txt")):
        pytest.fail(
            f"The Odoo imported here ({tree}) is not a source tree with its requirements.txt: "
            "set ODOO_SOURCE to an Odoo 18 source tree to run this test."
        )
    return tree


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def scratch():
    database = f"gobysend_setup_{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory(prefix="gobysend_setup_") as folder:
        env = dict(
            os.environ,
            ODOO_SOURCE=odoo_source_tree(),
            GOBYSEND_VENV=os.path.join(folder, "venv"),
            GOBYSEND_VENV_SYSTEM_PACKAGES="1",
            GOBYSEND_DEMO_DB=database,
            GOBYSEND_DEMO_PORT=str(free_port()),
        )
        env.pop("PYTHON", None)
        yield env, folder
    subprocess.run(["dropdb", "--if-exists", database], check=False, capture_output=True)


def test_run_demo_installs_odoo_from_source_and_serves(scratch):
    env, folder = scratch
    output_path = os.path.join(folder, "run-demo.out")
    with open(output_path, "wb") as output:
        demo = subprocess.Popen(
            [os.path.join(REPO_ROOT, "setup", "run-demo")],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base_url = f"http://127.0.0.1:{env['GOBYSEND_DEMO_PORT']}"
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            assert demo.poll() is None, f"run-demo stopped:\n{read(output_path)}"
            try:
                if requests.get(base_url + "/web/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(1)
        else:
            pytest.fail(f"the demo did not answer within {STARTUP_TIMEOUT} s:\n{read(output_path)}")

        printed = read(output_path)
        assert f"Installing Odoo 18.0 from {env['ODOO_SOURCE']}" in printed
        venv_python = os.path.join(env["GOBYSEND_VENV"], "bin", "python")
        imported = subprocess.run(
            [venv_python, "-c", "import odoo; print(odoo.__file__)"], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert imported.startswith(os.path.realpath(env["ODOO_SOURCE"])), imported

        key = re.search(r"API key of the demo workspace \"Online Shop\": (\S+)", printed).group(1)
        answer = requests.post(
            base_url + "/gobysend/api/v1/track",
            json={"id": "C-1001", "name": "order_completed", "properties": {"total": 750000}},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["duplicate"] is False
        refused = requests.post(
            base_url + "/gobysend/api/v1/track",
            json={"id": "C-1001", "name": "order_completed"},
            headers={"Authorization": "Bearer gbs_wrong"},
            timeout=30,
        )
        assert refused.status_code == 401
    finally:
        try:
            os.killpg(demo.pid, signal.SIGTERM)
            demo.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(demo.pid, signal.SIGKILL)

    # A second run finds everything in place and installs nothing.
    again = subprocess.run(
        ["bash", "-c", 'source setup/_common.sh && ensure_environment && echo "python: $PYTHON"'],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert "==>" not in again.stdout, again.stdout
    assert f"python: {env['GOBYSEND_VENV']}/bin/python" in again.stdout


def read(path):
    with open(path, errors="replace") as handle:
        return handle.read()
