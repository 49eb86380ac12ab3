"""Consent per workspace and channel: proof, blacklists, double opt-in and the public pages."""

import re
from urllib.parse import urlsplit

import requests

from odoo.exceptions import AccessError, ValidationError
from odoo.tests import tagged

from .common import GobysendCase, GobysendHttpCase


class ConsentMixin:
    @classmethod
    def _setup_consent(cls):
        cls.env.company.email = "news@shop-a.example"
        Partner = cls.env["res.partner"]
        cls.partner = Partner.create({"name": "Nguyễn Thị Lan", "email": "lan@example.com", "phone": "+84 912 345 678"})
        cls.other_partner = Partner.create(
            {"name": "Trần Văn Minh", "email": "minh@example.com", "phone": "+84 987 654 321"}
        )
        Subscription = cls.env["gobysend.subscription"]
        cls.subscription = Subscription.create({"workspace_id": cls.workspace_a.id, "partner_id": cls.partner.id})
        cls.other_subscription = Subscription.create(
            {"workspace_id": cls.workspace_a.id, "partner_id": cls.other_partner.id}
        )
        cls.workspace_doi = cls.env["gobysend.workspace"].create(
            {"name": "Newsletter", "double_opt_in": True, "member_ids": [(6, 0, [cls.manager_a.id])]}
        )

    def _logs(self, subscription, **domain):
        return self.env["gobysend.consent.log"].search(
            [("subscription_id", "=", subscription.id)] + [(key, "=", value) for key, value in domain.items()]
        )

    def _email_blacklisted(self, email):
        return bool(self.env["mail.blacklist"].search_count([("email", "=", email)]))

    def _phone_blacklisted(self, number):
        return bool(self.env["phone.blacklist"].search_count([("number", "=", number)]))

    def _load_vietnamese(self):
        self.env["res.lang"]._activate_lang("vi_VN")
        self.env["ir.module.module"]._load_module_terms(["gobysend_automation"], ["vi_VN"], overwrite=True)

    def _flush_tracking(self):
        self.env.flush_all()
        self.env.cr.flush()  # runs the pre-commit hooks, which write the tracking values

    def _confirmation_mails(self, subscription):
        return self.env["mail.mail"].search([("model", "=", "gobysend.subscription"), ("res_id", "=", subscription.id)])


@tagged("post_install", "-at_install")
class TestConsentModel(ConsentMixin, GobysendCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._setup_consent()

    # ------------------------------------------------------------------
    # Proof
    # ------------------------------------------------------------------

    def test_creation_logs_initial_consent_of_every_channel(self):
        # Every channel starts subscribed: one record proves them all.
        log = self._logs(self.subscription)
        self.assertRecordValues(log, [{"channel": "all", "state": "subscribed", "source": "manual"}])
        self.assertEqual(log.workspace_id, self.workspace_a)
        self.assertEqual(log.partner_id, self.partner)
        # Channels that start apart are proven one by one.
        subscription = self.env["gobysend.subscription"].create(
            {"workspace_id": self.workspace_b.id, "partner_id": self.partner.id, "zalo_state": "unsubscribed"}
        )
        self.assertEqual(
            sorted((log.channel, log.state) for log in self._logs(subscription)),
            [("email", "subscribed"), ("push", "subscribed"), ("sms", "subscribed"), ("zalo", "unsubscribed")],
        )

    def test_consent_change_is_logged_with_source_ip_and_note(self):
        self.subscription._set_consent("zalo", "unsubscribed", "api", ip_address="203.0.113.7", note="Replied STOP")
        self.assertEqual(self.subscription.zalo_state, "unsubscribed")
        log = self._logs(self.subscription, channel="zalo", state="unsubscribed")
        self.assertEqual(len(log), 1)
        self.assertEqual((log.source, log.ip_address, log.note), ("api", "203.0.113.7", "Replied STOP"))
        self.assertTrue(log.create_date)

    def test_unchanged_consent_adds_no_record(self):
        before = len(self._logs(self.subscription))
        self.subscription._set_consent("email", "subscribed", "api")
        self.assertEqual(len(self._logs(self.subscription)), before)

    def test_unknown_channel_or_state_is_refused(self):
        with self.assertRaises(ValidationError):
            self.subscription._set_consent("fax", "unsubscribed", "api")
        with self.assertRaises(ValidationError):
            self.subscription._set_consent("email", "maybe", "api")

    def test_edit_by_a_user_is_logged_as_manual_consent_change(self):
        self.subscription.with_user(self.user_a).write({"sms_state": "unsubscribed", "external_id": "C-1"})
        self.assertEqual((self.subscription.sms_state, self.subscription.external_id), ("unsubscribed", "C-1"))
        log = self._logs(self.subscription, channel="sms", state="unsubscribed")
        self.assertEqual((log.source, log.create_uid), ("manual", self.user_a))

    def test_consent_cannot_be_handed_to_another_contact_or_workspace(self):
        with self.assertRaises(ValidationError):
            self.subscription.write({"workspace_id": self.workspace_b.id})
        with self.assertRaises(ValidationError):
            self.subscription.with_user(self.user_a).write({"partner_id": self.other_partner.id})
        # Writing the same values back is harmless (forms do it).
        self.subscription.write({"workspace_id": self.workspace_a.id, "partner_id": self.partner.id})
        self.assertEqual(self.subscription.workspace_id, self.workspace_a)

    def test_consent_history_is_hidden_from_other_workspaces(self):
        logs = self.env["gobysend.consent.log"].with_user(self.user_b).search([("partner_id", "=", self.partner.id)])
        self.assertFalse(logs)
        with self.assertRaises(AccessError):
            self._logs(self.subscription).with_user(self.user_b).read(["state"])
        self.assertEqual(len(self._logs(self.subscription).with_user(self.user_a).read(["state"])), 1)

    def test_consent_history_cannot_be_rewritten_by_users(self):
        log = self._logs(self.subscription, channel="all")
        with self.assertRaises(AccessError):
            log.with_user(self.manager_a).write({"state": "unsubscribed"})
        with self.assertRaises(AccessError):
            log.with_user(self.manager_a).unlink()

    def test_consent_changes_are_tracked_in_the_chatter(self):
        self._flush_tracking()  # what happened before this test is not tracked
        subscription = self.subscription.with_context(tracking_disable=False)
        subscription._set_consent("email", "unsubscribed", "unsubscribe_link")
        subscription.with_user(self.user_a).write({"sms_state": "bounced"})
        self._flush_tracking()
        tracked = {
            value.field_id.name: (value.old_value_char, value.new_value_char)
            for value in subscription.message_ids.tracking_value_ids
        }
        self.assertEqual(tracked["email_state"], ("Subscribed", "Unsubscribed"))
        self.assertEqual(tracked["sms_state"], ("Subscribed", "Bounced"))

    # ------------------------------------------------------------------
    # Blacklists
    # ------------------------------------------------------------------

    def test_email_opt_out_blacklists_the_address(self):
        self.assertFalse(self.partner.is_blacklisted)  # read first: the flag is cached
        self.subscription._set_consent("email", "unsubscribed", "unsubscribe_link")
        self.assertTrue(self._email_blacklisted("lan@example.com"))
        self.assertTrue(self.partner.is_blacklisted)
        self.assertTrue(self.subscription._is_opted_out("email"))
        self.assertFalse(self._phone_blacklisted("+84912345678"))

    def test_sms_opt_out_blacklists_the_number(self):
        self.assertEqual(self.partner.phone_sanitized, "+84912345678")
        self.assertFalse(self.partner.phone_sanitized_blacklisted)
        self.subscription._set_consent("sms", "unsubscribed", "api")
        self.assertTrue(self._phone_blacklisted("+84912345678"))
        self.assertTrue(self.partner.phone_sanitized_blacklisted)
        self.assertFalse(self._email_blacklisted("lan@example.com"))

    def test_zalo_and_push_opt_outs_touch_no_blacklist(self):
        self.subscription._set_consent("zalo", "unsubscribed", "api")
        self.subscription._set_consent("push", "unsubscribed", "api")
        self.assertFalse(self._email_blacklisted("lan@example.com"))
        self.assertFalse(self._phone_blacklisted("+84912345678"))
        self.assertTrue(self.subscription._is_opted_out("zalo"))
        self.assertFalse(self.subscription._is_opted_out("email"))

    def test_resubscribing_lifts_the_blacklist(self):
        self.subscription._set_consent("email", "unsubscribed", "unsubscribe_link")
        self.subscription._set_consent("sms", "unsubscribed", "unsubscribe_link")
        self.assertTrue(self.partner.is_blacklisted)
        self.subscription._set_consent("email", "subscribed", "preference_page")
        self.subscription._set_consent("sms", "subscribed", "preference_page")
        self.assertFalse(self._email_blacklisted("lan@example.com"))
        self.assertFalse(self._phone_blacklisted("+84912345678"))
        self.assertFalse(self.partner.is_blacklisted)
        self.assertFalse(self.partner.phone_sanitized_blacklisted)
        self.assertFalse(self.subscription._is_opted_out("email"))

    def test_opt_out_in_another_workspace_keeps_the_blacklist(self):
        in_b = self.env["gobysend.subscription"].create(
            {"workspace_id": self.workspace_b.id, "partner_id": self.partner.id}
        )
        in_b._set_consent("email", "unsubscribed", "unsubscribe_link")
        self.subscription._set_consent("email", "unsubscribed", "unsubscribe_link")
        self.subscription._set_consent("email", "subscribed", "preference_page")
        self.assertTrue(self._email_blacklisted("lan@example.com"))
        self.assertTrue(self.subscription._is_opted_out("email"))

    def test_opt_out_of_another_contact_with_the_same_address_keeps_the_blacklist(self):
        twin = self.env["res.partner"].create({"name": "Lan (shop account)", "email": "LAN@example.com"})
        twin_subscription = self.env["gobysend.subscription"].create(
            {"workspace_id": self.workspace_b.id, "partner_id": twin.id}
        )
        twin_subscription._set_consent("email", "unsubscribed", "api")
        self.subscription._set_consent("email", "unsubscribed", "api")
        self.subscription._set_consent("email", "subscribed", "preference_page")
        self.assertTrue(self._email_blacklisted("lan@example.com"))

    def test_contact_created_opted_out_is_blacklisted(self):
        partner = self.env["res.partner"].create(
            {"name": "Imported", "email": "imported@example.com", "phone": "+84 903 000 111"}
        )
        subscription = self.env["gobysend.subscription"].create(
            {
                "workspace_id": self.workspace_b.id,
                "partner_id": partner.id,
                "email_state": "unsubscribed",
                "sms_state": "unsubscribed",
                "source": "import",
            }
        )
        self.assertTrue(self._email_blacklisted("imported@example.com"))
        self.assertTrue(self._phone_blacklisted("+84903000111"))
        self.assertEqual(self._logs(subscription, channel="email").state, "unsubscribed")
        self.assertEqual(self._logs(subscription, channel="email").source, "import")

    def test_odoo_blacklist_alone_opts_the_contact_out(self):
        self.env["mail.blacklist"]._add("lan@example.com")
        self.assertEqual(self.subscription.email_state, "subscribed")
        self.assertTrue(self.subscription._is_opted_out("email"))

    # ------------------------------------------------------------------
    # Double opt-in
    # ------------------------------------------------------------------

    def test_double_opt_in_creates_pending_and_queues_the_confirmation_email(self):
        subscription = self.env["gobysend.subscription"].create(
            {"workspace_id": self.workspace_doi.id, "partner_id": self.partner.id}
        )
        self.assertEqual(
            [subscription.email_state, subscription.sms_state, subscription.zalo_state, subscription.push_state],
            ["pending"] * 4,
        )
        self.assertEqual(set(self._logs(subscription).mapped("state")), {"pending"})
        mail = self._confirmation_mails(subscription)
        self.assertEqual(len(mail), 1)
        self.assertEqual(mail.state, "outgoing")
        self.assertIn("lan@example.com", mail.email_to)
        self.assertIn("Newsletter", mail.subject)
        self.assertIn(subscription._get_confirm_url(), mail.body_html)
        self.assertIn("/gobysend/confirm/%s?token=" % subscription.id, mail.body_html)
        self.assertEqual(mail.email_from, self.env.company.email_formatted)
        self.assertTrue(subscription.confirmation_sent_at)
        self.assertFalse(subscription.confirmed_at)

    def test_confirmation_email_speaks_the_contact_language(self):
        self._load_vietnamese()
        self.partner.lang = "vi_VN"
        subscription = self.env["gobysend.subscription"].create(
            {"workspace_id": self.workspace_doi.id, "partner_id": self.partner.id}
        )
        mail = self._confirmation_mails(subscription)
        self.assertEqual(mail.subject, "Vui lòng xác nhận đăng ký nhận tin từ Newsletter")
        self.assertIn("Xác nhận đăng ký", mail.body_html)
        self.assertIn(subscription._get_confirm_url(), mail.body_html)

    def test_double_opt_in_cannot_be_skipped_by_sending_default_states(self):
        # The web client sends every field's default when it creates a record.
        subscription = self.env["gobysend.subscription"].create(
            {
                "workspace_id": self.workspace_doi.id,
                "partner_id": self.partner.id,
                "email_state": "subscribed",
                "sms_state": "unsubscribed",
            }
        )
        self.assertEqual((subscription.email_state, subscription.sms_state), ("pending", "unsubscribed"))

    def test_double_opt_in_applies_to_a_workspace_given_by_the_context(self):
        subscription = (
            self.env["gobysend.subscription"]
            .with_context(default_workspace_id=self.workspace_doi.id)
            .create({"partner_id": self.partner.id})
        )
        self.assertEqual(subscription.email_state, "pending")
        self.assertEqual(len(self._confirmation_mails(subscription)), 1)

    def test_double_opt_in_can_be_skipped_explicitly(self):
        subscription = (
            self.env["gobysend.subscription"]
            .with_context(gobysend_skip_double_opt_in=True)
            .create({"workspace_id": self.workspace_doi.id, "partner_id": self.partner.id})
        )
        self.assertEqual(subscription.email_state, "subscribed")
        self.assertFalse(self._confirmation_mails(subscription))

    def test_no_double_opt_in_no_email(self):
        self.assertEqual(self.subscription.email_state, "subscribed")
        self.assertFalse(self._confirmation_mails(self.subscription))

    def test_contact_without_email_gets_no_confirmation(self):
        partner = self.env["res.partner"].create({"name": "Phone only", "phone": "+84 903 222 333"})
        subscription = self.env["gobysend.subscription"].create(
            {"workspace_id": self.workspace_doi.id, "partner_id": partner.id}
        )
        self.assertEqual(subscription.sms_state, "pending")
        self.assertFalse(self._confirmation_mails(subscription))
        with self.assertRaises(ValidationError):
            subscription.action_send_confirmation()

    def test_resending_the_confirmation_queues_another_email(self):
        subscription = self.env["gobysend.subscription"].create(
            {"workspace_id": self.workspace_doi.id, "partner_id": self.partner.id}
        )
        subscription.with_user(self.manager_a).action_send_confirmation()
        self.assertEqual(len(self._confirmation_mails(subscription)), 2)

    def test_confirming_subscribes_pending_channels_only(self):
        subscription = self.env["gobysend.subscription"].create(
            {"workspace_id": self.workspace_doi.id, "partner_id": self.partner.id}
        )
        subscription._set_consent("sms", "unsubscribed", "preference_page")
        subscription.action_confirm(ip_address="198.51.100.4")
        self.assertEqual(
            [subscription.email_state, subscription.sms_state, subscription.zalo_state, subscription.push_state],
            ["subscribed", "unsubscribed", "subscribed", "subscribed"],
        )
        confirmed = self._logs(subscription, source="double_opt_in")
        self.assertEqual(sorted(confirmed.mapped("channel")), ["email", "push", "zalo"])
        self.assertEqual(set(confirmed.mapped("ip_address")), {"198.51.100.4"})
        self.assertTrue(subscription.confirmed_at)

    def test_second_confirmation_keeps_the_first_as_proof(self):
        subscription = self.env["gobysend.subscription"].create(
            {"workspace_id": self.workspace_doi.id, "partner_id": self.partner.id}
        )
        subscription.action_confirm()
        first = subscription.confirmed_at
        subscription.sudo().confirmed_at = first.replace(year=first.year - 1)
        subscription.action_confirm()
        self.assertEqual(subscription.confirmed_at, first.replace(year=first.year - 1))
        self.assertEqual(len(self._logs(subscription, source="double_opt_in")), 4)

    # ------------------------------------------------------------------
    # Signed links and headers
    # ------------------------------------------------------------------

    def test_tokens_are_bound_to_purpose_channel_and_subscription(self):
        tokens = {
            self.subscription._get_token("confirm"),
            self.subscription._get_token("preferences"),
            self.subscription._get_token("unsubscribe", "email"),
            self.subscription._get_token("unsubscribe", "sms"),
            self.other_subscription._get_token("unsubscribe", "email"),
        }
        self.assertEqual(len(tokens), 5)
        token = self.subscription._get_token("unsubscribe", "email")
        self.assertTrue(self.subscription._check_token("unsubscribe", token, "email"))
        self.assertFalse(self.subscription._check_token("unsubscribe", token, "sms"))
        self.assertFalse(self.subscription._check_token("preferences", token))
        self.assertFalse(self.other_subscription._check_token("unsubscribe", token, "email"))
        self.assertFalse(
            self.subscription._check_token("unsubscribe", token[:-1] + ("0" if token[-1] != "0" else "1"), "email")
        )
        self.assertFalse(self.subscription._check_token("unsubscribe", None, "email"))
        self.assertFalse(self.subscription._check_token("unsubscribe", ["x"], "email"))

    def test_tokens_depend_on_the_database_secret(self):
        token = self.subscription._get_token("confirm")
        self.env["ir.config_parameter"].sudo().set_param("database.secret", "another secret")
        self.assertNotEqual(self.subscription._get_token("confirm"), token)
        self.assertFalse(self.subscription._check_token("confirm", token))

    def test_email_unsubscribe_headers(self):
        headers = self.subscription._get_email_unsubscribe_headers()
        self.assertEqual(headers["List-Unsubscribe-Post"], "List-Unsubscribe=One-Click")
        url = self.subscription._get_unsubscribe_url("email")
        self.assertEqual(headers["List-Unsubscribe"], "<%s>" % url)
        self.assertIn("/gobysend/unsubscribe/%s/email?token=" % self.subscription.id, url)
        self.assertTrue(url.startswith("http"))


@tagged("post_install", "-at_install")
class TestConsentPages(ConsentMixin, GobysendHttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._setup_consent()

    def _path(self, url):
        parts = urlsplit(url)
        return "%s?%s" % (parts.path, parts.query) if parts.query else parts.path

    def _states(self, subscription):
        subscription.invalidate_recordset()
        return {channel: subscription[f"{channel}_state"] for channel in ("email", "sms", "zalo", "push")}

    def _assert_refused(self, response, subscription=None, log_count=None):
        self.assertEqual(response.status_code, 403)
        self.assertIn("invalid", response.text)
        if subscription is not None:
            self.assertEqual(len(self._logs(subscription)), log_count)

    def _new_pending(self):
        return self.env["gobysend.subscription"].create(
            {"workspace_id": self.workspace_doi.id, "partner_id": self.partner.id}
        )

    # ------------------------------------------------------------------
    # Confirmation
    # ------------------------------------------------------------------

    def _confirm_form(self, path):
        """Open a confirmation link as a person does; return the response and its form's fields."""
        response = self.url_open(path)
        fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', response.text))
        return response, fields

    def test_confirmation_link_only_asks(self):
        # What a mail scanner or a link preview does: open the link, and nothing more.
        subscription = self._new_pending()
        response, fields = self._confirm_form(self._path(subscription._get_confirm_url()))
        self.assertEqual(response.status_code, 200)
        self.assertIn("Confirm your subscription", response.text)
        self.assertIn("Newsletter", response.text)
        self.assertEqual(set(fields), {"csrf_token", "token"})
        self.assertEqual(set(self._states(subscription).values()), {"pending"})
        self.assertFalse(self._logs(subscription, source="double_opt_in"))
        self.assertFalse(subscription.confirmed_at)

    def test_confirmation_button_subscribes(self):
        subscription = self._new_pending()
        response, fields = self._confirm_form(self._path(subscription._get_confirm_url()))
        response = self.url_open("/gobysend/confirm/%s" % subscription.id, data=fields)
        self.assertEqual(response.status_code, 200)
        self.assertIn("is confirmed", response.text)
        self.assertEqual(set(self._states(subscription).values()), {"subscribed"})
        confirmed = self._logs(subscription, source="double_opt_in")
        self.assertEqual(len(confirmed), 4)
        self.assertEqual(set(confirmed.mapped("ip_address")), {"127.0.0.1"})
        self.assertTrue(subscription.confirmed_at)

    def test_confirmation_post_needs_the_signed_token_and_the_csrf_token(self):
        subscription = self._new_pending()
        _response, fields = self._confirm_form(self._path(subscription._get_confirm_url()))
        logs = len(self._logs(subscription))
        token = fields["token"]
        tampered = token[:-2] + ("00" if token[-2:] != "00" else "11")
        for data in (
            dict(fields, token=tampered),
            dict(fields, token=subscription._get_token("preferences")),
            {"csrf_token": fields["csrf_token"]},
        ):
            with self.subTest(data=data):
                self._assert_refused(self.url_open("/gobysend/confirm/%s" % subscription.id, data=data))
        # Another site posting the signed token in a visitor's name has no CSRF token of this session.
        response = requests.post(
            self.base_url() + "/gobysend/confirm/%s" % subscription.id, data={"token": token}, timeout=30
        )
        self.assertEqual(response.status_code, 400)
        self.assertEqual(len(self._logs(subscription)), logs)
        self.assertEqual(set(self._states(subscription).values()), {"pending"})
        self.assertFalse(subscription.confirmed_at)

    def test_a_person_confirms_with_the_button_in_a_browser(self):
        subscription = self._new_pending()
        # The page's own form, posted by the browser with the page's cookies (the CSRF token's session).
        code = """
            (async () => {
                const form = document.querySelector("form");
                if (!form.querySelector("button.o_gobysend_confirm")) {
                    throw new Error("no confirmation button");
                }
                const response = await fetch(form.action, { method: "POST", body: new FormData(form) });
                const text = await response.text();
                if (!text.includes("is confirmed")) {
                    throw new Error(`not confirmed: HTTP ${response.status}`);
                }
                console.log("test successful");
            })().catch((error) => console.error(error.message));
        """
        self.browser_js(self._path(subscription._get_confirm_url()), code)
        self.assertEqual(set(self._states(subscription).values()), {"subscribed"})

    def test_link_in_the_queued_email_is_the_one_that_works(self):
        subscription = self._new_pending()
        body = self._confirmation_mails(subscription).body_html
        url = re.search(r'href="([^"]*/gobysend/confirm/[^"]*)"', body).group(1)
        response, fields = self._confirm_form(self._path(url.replace("&amp;", "&")))
        self.assertEqual(response.status_code, 200)
        self.assertEqual(self.url_open("/gobysend/confirm/%s" % subscription.id, data=fields).status_code, 200)
        self.assertEqual(self._states(subscription)["email"], "subscribed")

    def test_confirmation_refuses_bad_tokens(self):
        subscription = self._new_pending()
        logs = len(self._logs(subscription))
        token = subscription._get_token("confirm")
        tampered = token[:-2] + ("00" if token[-2:] != "00" else "11")
        for path in (
            "/gobysend/confirm/%s?token=%s" % (subscription.id, tampered),
            "/gobysend/confirm/%s" % subscription.id,
            "/gobysend/confirm/%s?token=" % subscription.id,
            # Characters no token has: a wrong token like any other, not a server error.
            "/gobysend/confirm/%s?token=%s" % (subscription.id, "%C3%A9" * 16),
            # Tokens made for another purpose or another subscription.
            "/gobysend/confirm/%s?token=%s" % (subscription.id, subscription._get_token("preferences")),
            "/gobysend/confirm/%s?token=%s" % (subscription.id, subscription._get_token("unsubscribe", "email")),
            "/gobysend/confirm/%s?token=%s" % (subscription.id, self.subscription._get_token("confirm")),
            # A valid token on the wrong id, and an id that does not exist.
            "/gobysend/confirm/%s?token=%s" % (self.subscription.id, token),
            "/gobysend/confirm/999999999?token=%s" % token,
        ):
            with self.subTest(path=path):
                self._assert_refused(self.url_open(path), subscription, logs)
        self.assertEqual(set(self._states(subscription).values()), {"pending"})
        self.assertFalse(subscription.confirmed_at)

    # ------------------------------------------------------------------
    # Unsubscribe
    # ------------------------------------------------------------------

    def test_unsubscribe_get_only_asks(self):
        logs = len(self._logs(self.subscription))
        response = self.url_open(self._path(self.subscription._get_unsubscribe_url("email")))
        self.assertEqual(response.status_code, 200)
        self.assertIn('name="confirm"', response.text)
        self.assertIn("Shop A", response.text)
        self.assertEqual(self._states(self.subscription)["email"], "subscribed")
        self.assertEqual(len(self._logs(self.subscription)), logs)
        self.assertFalse(self._email_blacklisted("lan@example.com"))

    def test_pages_speak_the_contact_language(self):
        self._load_vietnamese()
        self.partner.lang = "vi_VN"
        response = self.url_open(self._path(self.subscription._get_unsubscribe_url("push")))
        self.assertIn("Ngừng nhận tin nhắn", response.text)
        self.assertIn("Thông báo đẩy", response.text)
        response = self.url_open(self._path(self.subscription._get_preferences_url()))
        self.assertIn("Lưu tùy chọn của tôi", response.text)
        # Another contact keeps the default language.
        response = self.url_open(self._path(self.other_subscription._get_unsubscribe_url("push")))
        self.assertIn("Stop receiving", response.text)

    def test_unsubscribe_post_without_confirmation_only_asks(self):
        response = self.url_open(self._path(self.subscription._get_unsubscribe_url("email")), data={"other": "1"})
        self.assertEqual(response.status_code, 200)
        self.assertEqual(self._states(self.subscription)["email"], "subscribed")

    def test_unsubscribe_confirmed_by_the_contact(self):
        response = self.url_open(self._path(self.subscription._get_unsubscribe_url("email")), data={"confirm": "1"})
        self.assertEqual(response.status_code, 200)
        # The preference page follows, with a link back to it.
        self.assertIn("/gobysend/preferences/%s" % self.subscription.id, response.text)
        self.assertIn("no longer receive", response.text)
        self.assertEqual(
            self._states(self.subscription),
            {"email": "unsubscribed", "sms": "subscribed", "zalo": "subscribed", "push": "subscribed"},
        )
        log = self._logs(self.subscription, channel="email", state="unsubscribed")
        self.assertEqual((log.source, log.ip_address), ("unsubscribe_link", "127.0.0.1"))
        self.assertTrue(self._email_blacklisted("lan@example.com"))
        self.assertEqual(self._states(self.other_subscription)["email"], "subscribed")

    def test_sms_unsubscribe_link_blacklists_the_number(self):
        response = self.url_open(self._path(self.subscription._get_unsubscribe_url("sms")), data={"confirm": "1"})
        self.assertEqual(response.status_code, 200)
        self.assertEqual(self._states(self.subscription)["sms"], "unsubscribed")
        self.assertEqual(self._states(self.subscription)["email"], "subscribed")
        self.assertTrue(self._phone_blacklisted("+84912345678"))

    def test_one_click_unsubscribe_needs_no_cookie(self):
        url = self.base_url() + self._path(self.subscription._get_unsubscribe_url("email"))
        # A mail provider's request: a bare POST with the RFC 8058 body, no session, no CSRF token.
        response = requests.post(url, data={"List-Unsubscribe": "One-Click"}, timeout=30, allow_redirects=False)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(self._states(self.subscription)["email"], "unsubscribed")
        self.assertEqual(self._logs(self.subscription, channel="email", state="unsubscribed").source, "one_click")
        self.assertTrue(self._email_blacklisted("lan@example.com"))

    def test_one_click_with_a_tampered_token_changes_nothing(self):
        token = self.subscription._get_token("unsubscribe", "email")
        path = "/gobysend/unsubscribe/%s/email?token=%s" % (self.subscription.id, token[::-1])
        logs = len(self._logs(self.subscription))
        response = requests.post(self.base_url() + path, data={"List-Unsubscribe": "One-Click"}, timeout=30)
        self._assert_refused(response, self.subscription, logs)
        self.assertEqual(self._states(self.subscription)["email"], "subscribed")
        self.assertFalse(self._email_blacklisted("lan@example.com"))

    def test_unsubscribe_refuses_bad_links(self):
        logs = len(self._logs(self.subscription))
        sub_id = self.subscription.id
        email_token = self.subscription._get_token("unsubscribe", "email")
        for path in (
            # The email link's token used for another channel, and an unknown channel.
            "/gobysend/unsubscribe/%s/sms?token=%s" % (sub_id, email_token),
            "/gobysend/unsubscribe/%s/fax?token=%s" % (sub_id, email_token),
            # Another contact's link on this contact's id, and the right token on the wrong id.
            "/gobysend/unsubscribe/%s/email?token=%s"
            % (sub_id, self.other_subscription._get_token("unsubscribe", "email")),
            "/gobysend/unsubscribe/%s/email?token=%s" % (self.other_subscription.id, email_token),
            "/gobysend/unsubscribe/999999999/email?token=%s" % email_token,
            # Tokens of other purposes, a tampered one and none.
            "/gobysend/unsubscribe/%s/email?token=%s" % (sub_id, self.subscription._get_token("preferences")),
            "/gobysend/unsubscribe/%s/email?token=%s" % (sub_id, email_token.upper()),
            "/gobysend/unsubscribe/%s/email" % sub_id,
        ):
            for data in (None, {"confirm": "1"}, {"List-Unsubscribe": "One-Click"}):
                with self.subTest(path=path, data=data):
                    self._assert_refused(self.url_open(path, data=data), self.subscription, logs)
        self.assertEqual(set(self._states(self.subscription).values()), {"subscribed"})
        self.assertEqual(set(self._states(self.other_subscription).values()), {"subscribed"})

    # ------------------------------------------------------------------
    # Preferences
    # ------------------------------------------------------------------

    def test_preference_page_shows_every_channel(self):
        self.subscription._set_consent("sms", "unsubscribed", "api")
        self.subscription._set_consent("push", "bounced", "bounce")
        response = self.url_open(self._path(self.subscription._get_preferences_url()))
        self.assertEqual(response.status_code, 200)
        text = response.text
        self.assertIn("Shop A", text)
        for channel in ("email", "sms", "zalo", "push"):
            self.assertIn('name="%s"' % channel, text)
        self.assertRegex(text, r'<input[^>]*name="email"[^>]*checked')
        self.assertNotRegex(text, r'<input[^>]*name="sms"[^>]*checked')
        self.assertRegex(text, r'<input[^>]*name="push"[^>]*disabled')
        self.assertIn("undeliverable", text)

    def test_preference_page_saves_choices(self):
        url = self._path(self.subscription._get_preferences_url())
        response = self.url_open(url, data={"sms": "on", "zalo": "on"})
        self.assertEqual(response.status_code, 200)
        self.assertIn("preferences are saved", response.text)
        self.assertEqual(
            self._states(self.subscription),
            {"email": "unsubscribed", "sms": "subscribed", "zalo": "subscribed", "push": "unsubscribed"},
        )
        self.assertEqual(
            set(self._logs(self.subscription, source="preference_page").mapped("channel")), {"email", "push"}
        )
        self.assertTrue(self._email_blacklisted("lan@example.com"))
        # Ticking email again lifts the blacklist this workspace put there.
        self.url_open(url, data={"email": "on", "sms": "on", "zalo": "on"})
        self.assertEqual(self._states(self.subscription)["email"], "subscribed")
        self.assertFalse(self._email_blacklisted("lan@example.com"))
        self.assertEqual(
            self._logs(self.subscription, channel="email", state="subscribed", source="preference_page").ip_address,
            "127.0.0.1",
        )

    def test_preference_page_keeps_an_opt_out_held_by_another_workspace(self):
        in_b = self.env["gobysend.subscription"].create(
            {"workspace_id": self.workspace_b.id, "partner_id": self.partner.id}
        )
        in_b._set_consent("email", "unsubscribed", "unsubscribe_link")
        self.subscription._set_consent("email", "unsubscribed", "unsubscribe_link")
        self.url_open(
            self._path(self.subscription._get_preferences_url()),
            data={"email": "on", "sms": "on", "zalo": "on", "push": "on"},
        )
        self.assertEqual(self._states(self.subscription)["email"], "subscribed")
        self.assertEqual(self._states(in_b)["email"], "unsubscribed")
        self.assertTrue(self._email_blacklisted("lan@example.com"))

    def test_preference_page_leaves_bounced_and_pending_channels(self):
        subscription = self._new_pending()
        subscription._set_consent("sms", "bounced", "bounce")
        self.url_open(self._path(subscription._get_preferences_url()), data={"email": "on", "sms": "on", "zalo": "on"})
        self.assertEqual(
            self._states(subscription),
            {"email": "pending", "sms": "bounced", "zalo": "pending", "push": "unsubscribed"},
        )

    def test_preference_page_refuses_bad_tokens(self):
        logs = len(self._logs(self.subscription))
        token = self.subscription._get_token("preferences")
        for path in (
            "/gobysend/preferences/%s?token=%s" % (self.subscription.id, token[1:]),
            "/gobysend/preferences/%s?token=%s" % (self.subscription.id, self.subscription._get_token("confirm")),
            "/gobysend/preferences/%s?token=%s"
            % (self.subscription.id, self.other_subscription._get_token("preferences")),
            "/gobysend/preferences/%s?token=%s" % (self.other_subscription.id, token),
            "/gobysend/preferences/%s" % self.subscription.id,
        ):
            for data in (None, {"sms": "on"}):
                with self.subTest(path=path, data=data):
                    self._assert_refused(self.url_open(path, data=data), self.subscription, logs)
        self.assertEqual(set(self._states(self.subscription).values()), {"subscribed"})
