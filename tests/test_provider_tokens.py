"""Single-use provider credentials survive whatever happens to the batch that renewed them.

Zalo hands out a new refresh token with every refresh and forgets the old one at once: a new
token rolled back with a failed batch would leave the channel unable to send until a manager
authorizes it again. These tests commit for real (that is what they test), on the end-to-end
database, against a local server standing in for Zalo."""

import datetime
import os
import uuid

import pytest

from odoo import SUPERUSER_ID, api, fields

from odoo.addons.gobysend_channels.tests.provider_server import ProviderServer

E2E_DB = os.environ.get("GOBYSEND_E2E_DB")
pytestmark = pytest.mark.skipif(not E2E_DB, reason="needs the end-to-end database prepared by setup/run-tests")

ZNS_PATH = "/message/template"
TOKEN_PATH = "/v4/oa/access_token"


@pytest.fixture
def zalo_message(registry):
    """A Zalo channel whose access token has expired, pointed at ``server``, and one queued
    message on it; everything committed, and removed afterwards."""
    created = {}

    def make(server):
        tag = uuid.uuid4().hex[:8]
        with registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {"tracking_disable": True})
            workspace = env["gobysend.workspace"].create(
                {"name": f"Zalo tokens {tag}", "tz": "UTC", "quiet_hours_start": 0, "quiet_hours_end": 0}
            )
            created["workspace"] = workspace.id
            partner = env["res.partner"].create({"name": f"Lan {tag}", "phone": "+84912345678"})
            created["partner"] = partner.id
            env["gobysend.subscription"].create({"workspace_id": workspace.id, "partner_id": partner.id})
            channel = env["gobysend.channel"].create(
                {
                    "name": "Zalo",
                    "workspace_id": workspace.id,
                    "channel_type": "zalo",
                    "provider": "zalo",
                    "state": "enabled",
                    "token_cost": 0,
                    "zalo_app_id": "1234567890",
                    "zalo_app_secret": "zalo-app-secret",
                    "zalo_access_token": "expired-access-token",
                    "zalo_refresh_token": "single-use-refresh-token",
                    "zalo_token_expires_at": fields.Datetime.now() - datetime.timedelta(hours=1),
                    "zalo_template_id": "231234",
                    "zalo_api_url": server.url,
                    "zalo_oauth_url": server.url,
                }
            )
            message = env["gobysend.message"]._enqueue(partner, channel, '{"customer_name": "{{ contact.name }}"}')
            return channel.id, message.id

    yield make
    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        if "workspace" in created:
            env["gobysend.workspace"].browse(created["workspace"]).unlink()
        env["res.partner"].browse(created.get("partner", [])).unlink()


def test_rotated_zalo_refresh_token_outlives_a_failed_batch(registry, zalo_message):
    with ProviderServer() as server:
        channel_id, message_id = zalo_message(server)
        server.expect(
            TOKEN_PATH,
            json={"access_token": "new-access-token", "refresh_token": "rotated-refresh-token", "expires_in": "90000"},
        )
        server.expect(ZNS_PATH, json={"error": 0, "message": "Success", "data": {"msg_id": "zns-1"}})
        # The batch refreshes the token, sends, and then fails: its transaction is rolled back
        # (a serialization failure, a worker killed, a request that errors after sending...).
        with pytest.raises(RuntimeError, match="after the refresh"), registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            message = env["gobysend.message"].browse(message_id)._dispatch()
            assert message.state == "sent", message.reason
            raise RuntimeError("the batch failed after the refresh")
        assert [request.path for request in server.requests] == [TOKEN_PATH, ZNS_PATH]

    with registry.cursor() as cr:
        cr.execute("SELECT state FROM gobysend_message WHERE id = %s", (message_id,))
        assert cr.fetchone()[0] == "queued", "the batch's own work was rolled back"
        env = api.Environment(cr, SUPERUSER_ID, {})
        channel = env["gobysend.channel"].browse(channel_id)
        assert (channel.zalo_access_token, channel.zalo_refresh_token) == ("new-access-token", "rotated-refresh-token")
        cr.execute("SELECT now() at time zone 'UTC'")
        assert channel.zalo_token_expires_at > cr.fetchone()[0]
