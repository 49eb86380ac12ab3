from odoo.tests import tagged

from .common import GobysendHttpCase


@tagged("post_install", "-at_install")
class TestTrackingApi(GobysendHttpCase):
    def test_identify_then_track_stores_one_event_per_message_id(self):
        response = self.api("POST", "/identify", {"id": "C-1", "email": "lan@example.com", "attributes": {"tier": "gold"}})
        self.assertEqual(response.status_code, 200, response.text)
        contact_id = response.json()["contact_id"]
        for _attempt in range(2):
            response = self.api("POST", "/track", {"id": "C-1", "name": "order_completed", "message_id": "o-1"})
            self.assertEqual(response.status_code, 200, response.text)
        events = self.env["gobysend.event"].search([("workspace_id", "=", self.workspace_a.id)])
        self.assertEqual(len(events), 1)
        self.assertEqual(events.partner_id.id, contact_id)
        self.assertTrue(response.json()["duplicate"])

    def test_missing_key_is_refused(self):
        response = self.api("POST", "/track", {"id": "C-1", "name": "x"}, key="")
        self.assertEqual(response.status_code, 401)
