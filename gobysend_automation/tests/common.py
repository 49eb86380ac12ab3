import json

from odoo.tests import HttpCase, TransactionCase, new_test_user


class GobysendCase(TransactionCase):
    """Two workspaces, a manager and a restricted user in each, and an API key for the first."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env = cls.env(context=dict(cls.env.context, tracking_disable=True))
        cls.manager_a = new_test_user(
            cls.env, login="gbs_manager_a", groups="base.group_user,gobysend_automation.group_gobysend_manager"
        )
        cls.user_a = new_test_user(cls.env, login="gbs_user_a", groups="base.group_user,gobysend_automation.group_gobysend_user")
        cls.user_b = new_test_user(cls.env, login="gbs_user_b", groups="base.group_user,gobysend_automation.group_gobysend_user")
        Workspace = cls.env["gobysend.workspace"]
        cls.workspace_a = Workspace.create(
            {"name": "Shop A", "member_ids": [(6, 0, [cls.manager_a.id, cls.user_a.id])], "country_id": cls.env.ref("base.vn").id}
        )
        cls.workspace_b = Workspace.create({"name": "Shop B", "member_ids": [(6, 0, [cls.user_b.id])]})
        cls.api_key_a = cls.workspace_a.with_user(cls.manager_a).api_key_create("Test shop")
        cls.ingest = cls.env["gobysend.ingest"]


class GobysendHttpCase(HttpCase, GobysendCase):
    """Calls the tracking API over HTTP as another system would."""

    api_root = "/gobysend/api/v1"

    def api(self, method, path, payload=None, key=None, raw=None, headers=None):
        all_headers = {"Content-Type": "application/json"}
        key = self.api_key_a if key is None else key
        if key:
            all_headers["Authorization"] = f"Bearer {key}"
        all_headers.update(headers or {})
        data = raw if raw is not None else (json.dumps(payload) if payload is not None else None)
        # url_open only GETs and POSTs; the test's own session (self.opener) speaks every method.
        return self.opener.request(method, self.base_url() + self.api_root + path, data=data, headers=all_headers, timeout=60)
