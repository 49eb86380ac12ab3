import datetime
import hashlib

from psycopg2 import IntegrityError

from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.tests import Form, freeze_time, new_test_user, tagged
from odoo.tools import SQL, mute_logger

from ..models.gobysend_workspace import WEEKDAY_FIELDS
from .common import GobysendCase

# Every model that belongs to a workspace, with the field that says which one.
WORKSPACE_MODELS = (
    "gobysend.subscription",
    "gobysend.consent.log",
    "gobysend.attribute",
    "gobysend.attribute.value",
    "gobysend.event",
    "gobysend.device",
)


@tagged("post_install", "-at_install")
class TestWorkspaceIsolation(GobysendCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.manager_b = new_test_user(
            cls.env, login="gbs_manager_b", groups="base.group_user,gobysend_automation.group_gobysend_manager"
        )
        cls.workspace_b.member_ids = [(4, cls.manager_b.id)]
        cls.admin = new_test_user(cls.env, login="gbs_settings_admin", groups="base.group_user,base.group_system")
        cls.outsider = new_test_user(cls.env, login="gbs_outsider", groups="base.group_user")
        cls.api_key_b = cls.workspace_b.with_user(cls.manager_b).api_key_create("Shop B site")
        # The same person is a contact of both workspaces: one partner, two subscriptions (B's
        # manager subscribed the contact that A's API created: an API adopts no other's contact).
        for workspace, tier in ((cls.workspace_a, "gold"), (cls.workspace_b, "bronze")):
            if workspace == cls.workspace_b:
                cls.env["gobysend.subscription"].create(
                    {"workspace_id": workspace.id, "partner_id": cls.partner.id, "external_id": "C-1"}
                )
            result = cls.ingest.identify(
                workspace, {"id": "C-1", "email": "lan@example.com", "attributes": {"tier": tier}}
            )
            cls.ingest.track(workspace, {"id": "C-1", "name": f"visited_{workspace.id}"})
            cls.ingest.register_device(workspace, {"id": "C-1", "token": f"tok-{workspace.id}", "platform": "ios"})
            cls.partner = cls.env["res.partner"].browse(result["contact_id"])

    def records_of(self, model, workspace):
        return self.env[model].with_context(active_test=False).search([("workspace_id", "=", workspace.id)])

    def test_every_workspace_model_has_data_in_both_workspaces(self):
        # Guards the other tests: isolation is only shown when there is something to hide.
        for model in (*WORKSPACE_MODELS, "gobysend.api.key"):
            for workspace in (self.workspace_a, self.workspace_b):
                with self.subTest(model=model, workspace=workspace.name):
                    self.assertTrue(self.records_of(model, workspace))

    def test_every_workspace_model_has_a_member_rule(self):
        user_group = self.env.ref("gobysend_automation.group_gobysend_user")
        models = [
            name
            for name, model in self.env.registry.items()
            if name.startswith("gobysend.")
            and not model._transient
            and not model._abstract
            and ("workspace_id" in model._fields or name == "gobysend.workspace")
        ]
        self.assertLessEqual({*WORKSPACE_MODELS, "gobysend.api.key", "gobysend.workspace"}, set(models))
        for name in models:
            with self.subTest(model=name):
                rules = self.env["ir.rule"].search([("model_id.model", "=", name), ("groups", "in", user_group.id)])
                self.assertTrue(any("member_ids" in rule.domain_force for rule in rules))

    def test_members_see_their_own_workspace_only(self):
        for user, own, other in (
            (self.user_a, self.workspace_a, self.workspace_b),
            (self.user_b, self.workspace_b, self.workspace_a),
        ):
            with self.subTest(user=user.login):
                self.assertEqual(self.env["gobysend.workspace"].with_user(user).search([]), own)
                self.assertEqual(
                    self.env["gobysend.workspace"].with_user(user).search_count([("id", "=", other.id)]), 0
                )
                for model in WORKSPACE_MODELS:
                    visible = self.env[model].with_user(user).search([])
                    self.assertEqual(visible.ids, self.records_of(model, own).ids, model)
                    self.assertEqual(self.env[model].with_user(user).search_count([("workspace_id", "=", other.id)]), 0)

    def test_records_of_another_workspace_cannot_be_read(self):
        for user, other in ((self.user_a, self.workspace_b), (self.user_b, self.workspace_a)):
            with self.subTest(user=user.login):
                with self.assertRaises(AccessError):
                    other.with_user(user).read(["name"])
                for model in WORKSPACE_MODELS:
                    foreign = self.records_of(model, other)[:1]
                    with self.subTest(model=model), self.assertRaises(AccessError):
                        foreign.with_user(user).read(["workspace_id"])
                    with self.assertRaises(AccessError):
                        self.env[model].with_user(user).browse(foreign.id).check_access("read")

    def test_a_shared_contact_shows_each_user_their_workspace_only(self):
        for user, own in ((self.user_a, self.workspace_a), (self.user_b, self.workspace_b)):
            with self.subTest(user=user.login):
                # One request serves one user; in a test, the cache filled for another user goes first.
                self.env.invalidate_all()
                partner = self.partner.with_user(user)
                self.assertEqual(partner.gobysend_subscription_ids.workspace_id, own)
                self.assertEqual(partner.gobysend_event_ids.workspace_id, own)
                self.assertEqual(partner.gobysend_device_ids.workspace_id, own)
                self.assertEqual(partner.gobysend_attribute_value_ids.workspace_id, own)
                self.assertEqual(len(partner.gobysend_attribute_value_ids), 1)
                self.assertEqual(partner.gobysend_event_count, 1)
                self.assertEqual(partner.gobysend_device_count, 1)
        self.env.invalidate_all()
        self.assertEqual(self.partner.with_user(self.user_a).gobysend_attribute_value_ids.value_display, "gold")

    def test_members_cannot_write_into_another_workspace(self):
        device_b = self.records_of("gobysend.device", self.workspace_b)
        with self.assertRaises(AccessError):
            device_b.with_user(self.user_a).write({"active": False})
        with self.assertRaises(AccessError):
            self.env["gobysend.attribute.value"].with_user(self.user_a).create(
                {
                    "attribute_id": self.records_of("gobysend.attribute", self.workspace_b).id,
                    "partner_id": self.env["res.partner"].create({"name": "Planted"}).id,
                    "value_string": "planted",
                }
            )
        with self.assertRaises(AccessError):
            self.workspace_b.with_user(self.manager_a).write({"name": "Taken over"})
        self.assertTrue(device_b.active)
        self.assertEqual(self.workspace_b.name, "Shop B")

    def test_managers_who_are_not_members_do_not_see_other_workspaces(self):
        for manager, own, other in (
            (self.manager_a, self.workspace_a, self.workspace_b),
            (self.manager_b, self.workspace_b, self.workspace_a),
        ):
            with self.subTest(manager=manager.login):
                self.assertEqual(self.env["gobysend.workspace"].with_user(manager).search([]), own)
                keys = self.env["gobysend.api.key"].with_user(manager).search([])
                self.assertEqual(keys, self.records_of("gobysend.api.key", own))
                with self.assertRaises(AccessError):
                    self.records_of("gobysend.api.key", other).with_user(manager).read(["name"])
                for model in WORKSPACE_MODELS:
                    self.assertEqual(self.env[model].with_user(manager).search([]).workspace_id, own, model)
                with self.assertRaises(AccessError):
                    other.with_user(manager).api_key_create("Sneaky")
        self.assertEqual(len(self.records_of("gobysend.api.key", self.workspace_a)), 1)

    def test_settings_administrators_see_every_workspace(self):
        self.assertNotIn(self.admin, self.workspace_a.member_ids | self.workspace_b.member_ids)
        workspaces = self.env["gobysend.workspace"].with_user(self.admin).search([])
        self.assertIn(self.workspace_a, workspaces)
        self.assertIn(self.workspace_b, workspaces)
        for model in (*WORKSPACE_MODELS, "gobysend.api.key"):
            with self.subTest(model=model):
                visible = self.env[model].with_user(self.admin).search([]).workspace_id
                self.assertIn(self.workspace_a, visible)
                self.assertIn(self.workspace_b, visible)

    def test_restricted_users_do_not_see_api_keys_at_all(self):
        for user in (self.user_a, self.user_b):
            with self.subTest(user=user.login), self.assertRaises(AccessError):
                self.env["gobysend.api.key"].with_user(user).search([])

    def test_users_outside_gobysend_see_nothing(self):
        for model in ("gobysend.workspace", *WORKSPACE_MODELS):
            with self.subTest(model=model), self.assertRaises(AccessError):
                self.env[model].with_user(self.outsider).search([])

    def test_joining_a_workspace_reveals_it(self):
        Subscription = self.env["gobysend.subscription"].with_user(self.user_a)
        self.assertEqual(Subscription.search_count([]), 1)
        self.workspace_b.member_ids = [(4, self.user_a.id)]
        self.assertEqual(Subscription.search_count([]), 2)
        self.workspace_b.member_ids = [(3, self.user_a.id)]
        self.assertEqual(Subscription.search_count([]), 1)

    def test_a_new_workspace_has_its_creator_as_member(self):
        workspace = self.env["gobysend.workspace"].with_user(self.manager_a).create({"name": "Shop C"})
        self.assertEqual(workspace.member_ids, self.manager_a)
        self.assertEqual(workspace.country_id, self.env.ref("base.vn"))
        self.assertFalse(self.env["gobysend.workspace"].with_user(self.user_a).search([("id", "=", workspace.id)]))


@tagged("post_install", "-at_install")
class TestApiKeys(GobysendCase):
    def key_of(self, plaintext):
        return self.env["gobysend.api.key"]._authenticate(plaintext)

    def rows_holding(self, text):
        """{table: row count} of the Gobysend tables with a row in which ``text`` appears in any column."""
        self.env.flush_all()
        self.env.cr.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_name LIKE %s",
            ("gobysend%",),
        )
        tables = [row[0] for row in self.env.cr.fetchall()]
        self.assertIn("gobysend_api_key", tables)
        self.assertIn("gobysend_api_key_wizard", tables)
        found = {}
        for table in tables:
            self.env.cr.execute(
                SQL(
                    "SELECT count(*) FROM %s AS row WHERE row_to_json(row)::text LIKE %s",
                    SQL.identifier(table),
                    f"%{text}%",
                )
            )
            count = self.env.cr.fetchone()[0]
            if count:
                found[table] = count
        return found

    def test_the_plaintext_is_returned_once_and_only_its_hash_is_stored(self):
        plaintext = self.workspace_a.with_user(self.manager_a).api_key_create("  Online shop  ")
        self.assertRegex(plaintext, r"^gbs_[0-9a-f]{8}_[A-Za-z0-9_-]{40,}$")
        key = self.key_of(plaintext)
        self.assertEqual(key.workspace_id, self.workspace_a)
        self.assertRecordValues(key, [{"name": "Online shop", "prefix": plaintext[:12], "active": True}])
        self.assertEqual(key.key_hash, hashlib.sha256(plaintext.encode()).hexdigest())
        secret = plaintext[12:]
        self.env.flush_all()
        self.assertEqual(self.rows_holding(secret), {})
        # Another key is another secret.
        self.assertNotEqual(self.workspace_a.with_user(self.manager_a).api_key_create("Second")[:12], plaintext[:12])

    def test_a_revoked_key_no_longer_opens_its_workspace(self):
        key = self.key_of(self.api_key_a)
        self.assertTrue(key)
        key.with_user(self.manager_a).action_revoke()
        self.assertFalse(key.active)
        self.assertTrue(key.revoked_at)
        self.assertFalse(self.key_of(self.api_key_a))
        with self.assertRaises(UserError):
            key.with_user(self.manager_a).action_unarchive()
        with self.assertRaises(UserError):
            key.sudo().write({"active": True})
        self.assertFalse(self.key_of(self.api_key_a))

    def test_wrong_keys_open_nothing(self):
        for plaintext in (
            None,
            "",
            self.api_key_a[:12],
            self.api_key_a[:-1],
            self.api_key_a + "x",
            self.api_key_a[:12] + "x" * 43,
            "gbs_00000000_" + self.api_key_a[13:],
            self.api_key_a.upper(),
        ):
            with self.subTest(plaintext=plaintext):
                self.assertFalse(self.key_of(plaintext))

    def test_a_key_of_an_archived_workspace_opens_nothing(self):
        self.workspace_a.active = False
        self.assertFalse(self.key_of(self.api_key_a))
        self.workspace_a.active = True
        self.assertTrue(self.key_of(self.api_key_a))

    def test_only_managers_of_the_workspace_create_keys(self):
        count = self.env["gobysend.api.key"].with_context(active_test=False).search_count
        before = count([])
        with self.assertRaises(AccessError):
            self.workspace_a.with_user(self.user_a).api_key_create("Mine")
        with self.assertRaises(AccessError):
            self.workspace_b.with_user(self.manager_a).api_key_create("Not mine")
        with self.assertRaises(AccessError):
            self.env["gobysend.api.key"].with_user(self.manager_a).create(
                {"workspace_id": self.workspace_a.id, "name": "Chosen", "prefix": "gbs_chosen00", "key_hash": "0" * 64}
            )
        self.assertEqual(count([]), before)

    def test_a_key_needs_a_name(self):
        for name in ("", "   ", None, False):
            with self.subTest(name=name), self.assertRaises(ValidationError):
                self.workspace_a.with_user(self.manager_a).api_key_create(name)
        self.assertEqual(len(self.workspace_a.api_key_ids), 1)

    def test_a_key_stays_in_its_workspace(self):
        key = self.key_of(self.api_key_a).with_user(self.manager_a)
        with self.assertRaises(UserError):
            key.write({"workspace_id": self.workspace_b.id})
        with self.assertRaises(UserError):
            key.write({"prefix": "gbs_ffffffff"})
        # A new name is fine.
        key.write({"name": "Renamed", "workspace_id": self.workspace_a.id})
        self.assertEqual(self.key_of(self.api_key_a).name, "Renamed")

    def test_the_wizard_generates_a_key_and_shows_it_once(self):
        wizard = (
            self.env["gobysend.api.key.wizard"]
            .with_user(self.manager_a)
            .create({"workspace_id": self.workspace_a.id, "name": "Point of sale"})
        )
        action = wizard.action_generate()
        shown = Form(self.env[action["res_model"]].with_user(self.manager_a).with_context(**action["context"]))
        plaintext = shown.key
        self.assertTrue(plaintext)
        key = self.key_of(plaintext)
        self.assertEqual(key.name, "Point of sale")
        self.assertEqual(key.workspace_id, self.workspace_a)
        self.assertEqual(self.rows_holding(plaintext[12:]), {})
        self.assertEqual(
            self.workspace_a.with_user(self.manager_a).action_open_api_key_wizard()["context"],
            {"default_workspace_id": self.workspace_a.id},
        )

    def test_the_wizard_is_for_managers(self):
        with self.assertRaises(AccessError):
            self.env["gobysend.api.key.wizard"].with_user(self.user_a).create(
                {"workspace_id": self.workspace_a.id, "name": "Mine"}
            )


@tagged("post_install", "-at_install")
class TestWorkspaceSettings(GobysendCase):
    def test_defaults(self):
        workspace = self.env["gobysend.workspace"].with_user(self.manager_a).create({"name": "Shop C"})
        self.assertRecordValues(
            workspace,
            [
                {
                    "member_ids": self.manager_a.ids,
                    "country_id": self.env.ref("base.vn").id,
                    "api_rate_limit": 6000,
                    "quiet_hours_start": 21.0,
                    "quiet_hours_end": 8.0,
                    "double_opt_in": False,
                }
            ],
        )
        self.assertTrue(workspace.tz)

    def test_sending_settings_are_checked(self):
        with self.assertRaises(ValidationError):
            self.workspace_a.quiet_hours_start = 25
        with self.assertRaises(ValidationError):
            self.workspace_a.quiet_hours_end = -1
        with self.assertRaises(ValidationError):
            self.workspace_a.write(dict.fromkeys(WEEKDAY_FIELDS, False))
        self.workspace_a.write(dict.fromkeys(WEEKDAY_FIELDS[:-1], False))
        self.assertTrue(self.workspace_a.send_on_sunday)

    def test_the_rate_limit_must_be_positive(self):
        with mute_logger("odoo.sql_db"), self.assertRaises(IntegrityError):
            self.workspace_a.api_rate_limit = 0
            self.env.flush_all()

    def test_counts_and_shortcuts_follow_the_workspace(self):
        self.ingest.identify(self.workspace_a, {"id": "C-1"})
        self.ingest.identify(self.workspace_a, {"id": "C-2"})
        self.ingest.track(self.workspace_a, {"id": "C-1", "name": "x"})
        self.ingest.register_device(self.workspace_a, {"id": "C-1", "token": "t", "platform": "web"})
        workspace = self.workspace_a.with_user(self.user_a)
        self.assertEqual((workspace.subscription_count, workspace.event_count, workspace.device_count), (2, 1, 1))
        self.assertEqual(
            (self.workspace_b.subscription_count, self.workspace_b.event_count, self.workspace_b.device_count),
            (0, 0, 0),
        )
        for action in (
            workspace.action_view_subscriptions(),
            workspace.action_view_events(),
            workspace.action_view_devices(),
        ):
            with self.subTest(model=action["res_model"]):
                self.assertEqual(action["domain"], [("workspace_id", "=", self.workspace_a.id)])
                self.assertTrue(self.env[action["res_model"]].with_user(self.user_a).search(action["domain"]))

    def test_phone_numbers_read_with_the_default_country(self):
        self.assertEqual(self.workspace_a._normalize_phone("0912 345 678"), "+84912345678")
        self.workspace_a.country_id = self.env.ref("base.th")
        self.assertEqual(self.workspace_a._normalize_phone("081 234 5678"), "+66812345678")
        self.workspace_a.country_id = False
        self.assertEqual(self.workspace_a._normalize_phone("0912 345 678"), "+84912345678")
        with self.assertInvalidInput("attributes.phone"):
            self.workspace_a._normalize_phone("0912", field_name="attributes.phone")


@tagged("post_install", "-at_install", "time_sensitive")
class TestApiKeyRateWindows(GobysendCase):
    def test_requests_are_counted_per_key_and_minute(self):
        key = self.env["gobysend.api.key"]._authenticate(self.api_key_a)
        start = datetime.datetime(2026, 3, 10, 9, 30, 5)
        self.assertEqual(key._touch_and_count(start), (1, datetime.datetime(2026, 3, 10, 9, 30)))
        self.assertEqual(key._touch_and_count(start + datetime.timedelta(seconds=50))[0], 2)
        self.assertEqual(
            key._touch_and_count(start + datetime.timedelta(seconds=60)), (1, datetime.datetime(2026, 3, 10, 9, 31))
        )
        other = self.env["gobysend.api.key"]._authenticate(self.workspace_a.api_key_create("Other"))
        self.assertEqual(other._touch_and_count(start)[0], 1)

    def test_expired_rate_windows_are_purged(self):
        # Counters are written by another connection, which this test's snapshot cannot see:
        # write windows here to watch the purge.
        key_id = self.env["gobysend.api.key"]._authenticate(self.api_key_a).id
        windows = [datetime.datetime(2026, 3, 10, 9, minute) for minute in (29, 30, 31, 32)]
        for window in windows:
            self.env.cr.execute(
                "INSERT INTO gobysend_api_rate (key_id, window_start, hits) VALUES (%s, %s, 1)", (key_id, window)
            )
        with freeze_time("2026-03-10 09:32:30"):
            self.env["gobysend.api.key"]._cron_purge_rate_windows()
            self.env["gobysend.api.key"]._cron_purge_rate_windows()
        self.env.cr.execute("SELECT window_start FROM gobysend_api_rate WHERE key_id = %s ORDER BY 1", (key_id,))
        self.assertEqual([row[0] for row in self.env.cr.fetchall()], windows[2:])
