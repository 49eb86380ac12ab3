"""Root pytest configuration, shared by the addons' tests and the end-to-end tests.

Time-sensitive tests: a test whose outcome could depend on the date or the time of day when it
runs (dates relative to today, time windows, quiet hours, sending days, timestamps written by
PostgreSQL) is marked, so that ``.ci/run`` can run it a second time with the clock moved:
an Odoo test class with ``@tagged(..., "time_sensitive")``, an end-to-end test with
``@pytest.mark.time_sensitive`` (or ``pytestmark`` for a whole module). ``-m time_sensitive``
selects them.

``GOBYSEND_TEST_CLOCK="YYYY-MM-DD HH:MM:SS"`` (UTC) given to ``setup/run-tests`` moves Python's
clock in every process of the run to that moment (see ``setup/moved_clock/sitecustomize.py``);
PostgreSQL's clock is not moved, so a test or a piece of code that mixes the two clocks fails.
"""

import datetime
import os

import odoo.tools

TIME_SENSITIVE = "time_sensitive"


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        f"{TIME_SENSITIVE}: the outcome could depend on the date or time; run again with the clock moved",
    )


def pytest_report_header(config):
    if os.environ.get("GOBYSEND_TEST_CLOCK"):
        # A moved clock that did not take would pass for a proof: check it here.
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        moved_to = datetime.datetime.fromisoformat(os.environ["GOBYSEND_TEST_CLOCK"])
        if abs(now - moved_to) > datetime.timedelta(hours=1):
            raise RuntimeError(f"GOBYSEND_TEST_CLOCK is {moved_to} but Python's clock reads {now}.")
        return f"gobysend: Python's clock moved to {now:%Y-%m-%d %H:%M} UTC (a {now:%A}); PostgreSQL's is not"
    return None


def pytest_collection(session):
    # Test modules import odoo.tests, which logs an error when Odoo is not in test mode;
    # pytest-odoo switches test mode on only after collection.
    odoo.tools.config["test_enable"] = True


def pytest_collection_modifyitems(config, items):
    # Odoo's own tag on a test class (or method) becomes the pytest marker.
    for item in items:
        owners = (getattr(item, "cls", None), getattr(item, "obj", None))
        if any(TIME_SENSITIVE in (getattr(owner, "test_tags", None) or ()) for owner in owners):
            item.add_marker(TIME_SENSITIVE)


def pytest_collection_finish(session):
    # Back off before the registry loads, or Odoo would run the at_install tests itself.
    odoo.tools.config["test_enable"] = False
