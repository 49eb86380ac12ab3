import datetime

from .common import ChannelCase
from .test_team_channels import SLACK_PATH

MINUTE = datetime.timedelta(minutes=1)


class TestNotifyStepOnSlack(ChannelCase):
    """The engine's *Notify the team* step, sent by the real Slack provider to a local server."""

    def setUp(self):
        super().setUp()
        # The engine's and the outbox's workers open cursors of their own: savepoints here.
        self.registry.enter_test_mode(self.env.cr)
        self.addCleanup(self.registry.leave_test_mode)
        self.slack = self.create_channel("slack", "slack", slack_webhook_url=self.server.url + SLACK_PATH)
        self.campaign = self.env["gobysend.campaign"].create(
            {
                "name": "Hot leads",
                "workspace_id": self.workspace_a.id,
                "trigger_kind": "manual",
                "partner_domain": f"[('id', '=', {self.contact.id})]",
            }
        )
        self.env["gobysend.campaign.step"].create(
            {
                "campaign_id": self.campaign.id,
                "kind": "notify",
                "channel_id": self.slack.id,
                "body": "{{ contact.name }} asked for a call",
            }
        )
        self.campaign.action_launch()
        while self.campaign._fan_out_chunk():
            pass
        self.journey = self.campaign.journey_ids

    def advance(self, now):
        Journey = self.env["gobysend.journey"]
        self.env.flush_all()
        while claim := Journey._claim_due(100, now):
            Journey._advance_claimed(claim, now)
        self.env.invalidate_all()

    def test_team_is_told_on_slack_then_the_journey_goes_on(self):
        self.server.expect(SLACK_PATH, text="ok")
        self.journey.message_ids._dispatch()
        (request,) = self.server.requests
        self.assertEqual(request.json(), {"text": "Nguyễn Thị Lan asked for a call"})
        self.advance(self.journey.wake_at)
        self.assertEqual(self.journey.state, "completed")

    def test_refused_notification_fails_the_journey_with_slack_s_reason(self):
        self.server.expect(SLACK_PATH, 404, text="no_service")
        message = self.journey.message_ids
        message._dispatch()
        self.assertEqual(message.state, "failed")
        self.advance(self.journey.wake_at)
        self.assertEqual(self.journey.state, "failed")
        self.assertIn("no_service", self.journey.reason)
        self.assertNotIn(SLACK_PATH, self.journey.reason)
