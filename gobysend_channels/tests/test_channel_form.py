from odoo.tests import Form

from odoo.addons.gobysend_channels import post_init_hook

from .common import ChannelCase


class TestChannelForm(ChannelCase):
    def test_choosing_a_provider_sets_a_channel_type_it_serves(self):
        for provider, channel_type in (
            ("twilio", "sms"),
            ("zalo", "zalo"),
            ("fcm", "push"),
            ("slack", "slack"),
            ("telegram", "chat"),
            ("webhook", "webhook"),
        ):
            form = Form(self.env["gobysend.channel"].with_user(self.manager_a))
            form.provider = provider
            self.assertEqual(form.channel_type, channel_type, provider)

    def test_credentials_appear_in_the_form_of_managers_only(self):
        secrets = ("twilio_auth_token", "zalo_refresh_token", "fcm_service_account", "webhook_secret", "receipt_secret")
        manager_arch = self.env["gobysend.channel"].with_user(self.manager_a).get_views([(False, "form")])["views"]
        user_arch = self.env["gobysend.channel"].with_user(self.user_a).get_views([(False, "form")])["views"]
        for name in secrets:
            self.assertIn(f'name="{name}"', manager_arch["form"]["arch"])
            self.assertNotIn(f'name="{name}"', user_arch["form"]["arch"])

    def test_new_receipt_secret(self):
        channel = self.create_channel("slack", "slack")
        old = channel.receipt_secret
        self.assertGreaterEqual(len(old), 32)
        channel.with_user(self.manager_a).action_generate_receipt_secret()
        self.assertNotEqual(channel.receipt_secret, old)
        self.assertEqual(channel.receipt_url, f"{channel.get_base_url()}/gobysend/receipts/{channel.id}")

    def test_install_gives_existing_channels_secrets_of_their_own(self):
        first = self.create_channel("slack", "slack")
        second = self.create_channel("webhook", "webhook")
        (first | second).write({"receipt_secret": "shared", "webhook_secret": "shared"})
        post_init_hook(self.env)
        secrets = {first.receipt_secret, second.receipt_secret, first.webhook_secret, second.webhook_secret}
        self.assertEqual(len(secrets), 4)
        self.assertNotIn("shared", secrets)
