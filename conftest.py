"""Root pytest configuration, shared by the addons' tests and the end-to-end tests."""

import odoo.tools


def pytest_collection(session):
    # Test modules import odoo.tests, which logs an error when Odoo is not in test mode;
    # pytest-odoo switches test mode on only after collection.
    odoo.tools.config["test_enable"] = True


def pytest_collection_finish(session):
    # Back off before the registry loads, or Odoo would run the at_install tests itself.
    odoo.tools.config["test_enable"] = False
