import gc
import json
from contextlib import contextmanager

from odoo.tests import HttpCase, TransactionCase, new_test_user

from odoo.addons.queue_job.job import Job

from ..exceptions import InvalidInput
from ..transport import ALLOWED_NETWORKS_PARAMETER

# The tests' stand-ins for providers listen on this machine's loopback addresses, which outgoing
# requests may reach only where an administrator allows it.
LOCAL_TEST_NETWORKS = "127.0.0.0/8, ::1/128"


class GobysendCase(TransactionCase):
    """Two workspaces, a manager and a restricted user in each, and an API key for the first."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env = cls.env(context=dict(cls.env.context, tracking_disable=True))
        cls.env["ir.config_parameter"].set_param(ALLOWED_NETWORKS_PARAMETER, LOCAL_TEST_NETWORKS)
        cls.manager_a = new_test_user(
            cls.env, login="gbs_manager_a", groups="base.group_user,gobysend_automation.group_gobysend_manager"
        )
        cls.user_a = new_test_user(
            cls.env, login="gbs_user_a", groups="base.group_user,gobysend_automation.group_gobysend_user"
        )
        cls.user_b = new_test_user(
            cls.env, login="gbs_user_b", groups="base.group_user,gobysend_automation.group_gobysend_user"
        )
        Workspace = cls.env["gobysend.workspace"]
        cls.workspace_a = Workspace.create(
            {
                "name": "Shop A",
                "member_ids": [(6, 0, [cls.manager_a.id, cls.user_a.id])],
                "country_id": cls.env.ref("base.vn").id,
            }
        )
        cls.workspace_b = Workspace.create({"name": "Shop B", "member_ids": [(6, 0, [cls.user_b.id])]})
        cls.api_key_a = cls.workspace_a.with_user(cls.manager_a).api_key_create("Test shop")
        cls.ingest = cls.env["gobysend.ingest"]

    @contextmanager
    def assertInvalidInput(self, field):
        """The block must refuse its input with an ``InvalidInput`` naming ``field``."""
        with self.assertRaises(InvalidInput) as caught:
            yield caught
        self.assertEqual(caught.exception.field, field, caught.exception.message)

    def commit_request(self):
        """What happens when the request's transaction commits: its post-commit callbacks run
        (the buttons that send do it then, through the claimed dispatch, whose cursors the
        registry's test mode hands out as savepoints of the test's transaction)."""
        self.env.flush_all()
        if self.registry.test_cr is not None:
            self.env.cr.postcommit.run()
            return
        self.registry.enter_test_mode(self.env.cr)
        try:
            self.env.cr.postcommit.run()
        finally:
            self.registry.leave_test_mode()

    def pending_import_jobs(self):
        """The pending jobs of customer list imports, in the order the job runner takes them:
        by priority, then the oldest first (one worker runs the chunks in file order)."""
        return self.env["queue.job"].search(
            [("model_name", "=", "gobysend.contact.import"), ("state", "=", "pending")], order="priority, id"
        )

    def run_import_jobs(self):
        """Run the imports' jobs, and those they queue (chunks, then their counts), to the end,
        as a queue_job worker runs them: the job's own user and context. Returns the number of
        chunks run."""
        chunks = 0
        while jobs := self.pending_import_jobs():
            for job in jobs:
                Job.load(self.env, job.uuid).perform()
                job.state = "done"
                chunks += job.method_name == "_run_chunk"
        return chunks

    def count_collections(self, function):
        """Run ``function`` with the garbage collector at Python's default thresholds (whatever
        the test runner set) and count the collections it sets off. Returns (its result, the
        number of collections, the thresholds right after it)."""
        collections = []

        def count(phase, info):
            if phase == "stop":
                collections.append(info["generation"])

        saved = gc.get_threshold()
        gc.set_threshold(700, 10, 10)
        gc.collect()
        gc.callbacks.append(count)
        try:
            result = function()
            return result, len(collections), gc.get_threshold()
        finally:
            gc.callbacks.remove(count)
            gc.set_threshold(*saved)

    def subscription_of(self, workspace, partner):
        """The subscription of a contact (partner record or id) in ``workspace``, archived ones included."""
        partner_id = partner if isinstance(partner, int) else partner.id
        return (
            self.env["gobysend.subscription"]
            .with_context(active_test=False)
            .search([("workspace_id", "=", workspace.id), ("partner_id", "=", partner_id)])
        )

    def events_of(self, workspace):
        return self.env["gobysend.event"].search([("workspace_id", "=", workspace.id)])


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
        response = self.opener.request(
            method, self.base_url() + self.api_root + path, data=data, headers=all_headers, timeout=60
        )
        # The request wrote through the test transaction behind the ORM's back.
        self.env.invalidate_all()
        return response

    def assertApiError(self, response, status, field=None):
        """``response`` is a JSON error with ``status``; with ``field``, one of its ``detail[*].loc``
        names it (written as in the API's messages: ``attributes.tier``, ``batch``...)."""
        self.assertEqual(response.status_code, status, response.text)
        detail = response.json()["detail"]
        if field is not None:
            self.assertIsInstance(detail, list, detail)
            # Pydantic names the member of a union that failed too: ``id.str``, ``id.int``.
            named = [".".join(str(part) for part in error["loc"][1:]) for error in detail]
            self.assertTrue(any(name == field or name.startswith(f"{field}.") for name in named), detail)
        return detail
