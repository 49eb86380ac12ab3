"""Prints an API key of the demo workspace, creating one named "Demo" the first time.

Keys are stored hashed, so the plaintext is kept in a database parameter of the demo database
only, to print the same key on every start.
"""

import sys

import odoo
from odoo.tools import config


def main(db_name, addons_path):
    config.parse_config(["-d", db_name, f"--addons-path={addons_path}", "--log-level=warn"])
    registry = odoo.modules.registry.Registry(db_name)
    with registry.cursor() as cr:
        env = odoo.api.Environment(cr, odoo.SUPERUSER_ID, {})
        params = env["ir.config_parameter"]
        key = params.get_param("gobysend.demo_api_key")
        if not key or not env["gobysend.api.key"]._authenticate(key):
            workspace = env.ref("gobysend_automation.gobysend_workspace_shop_demo")
            key = workspace.with_user(env.ref("base.user_admin")).api_key_create("Demo")
            params.set_param("gobysend.demo_api_key", key)
        print(key)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
