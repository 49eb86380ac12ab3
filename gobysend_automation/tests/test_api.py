import datetime
import json
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from odoo.tests import new_test_user, tagged

from ..routers.dispatcher import MAX_BODY_BYTES
from ..routers.tracking import router
from .common import GobysendHttpCase


@tagged("post_install", "-at_install")
class TestTrackingApi(GobysendHttpCase):
    def test_identify_then_track_stores_one_event_per_message_id(self):
        response = self.api(
            "POST", "/identify", {"id": "C-1", "email": "lan@example.com", "attributes": {"tier": "gold"}}
        )
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


@tagged("post_install", "-at_install", "time_sensitive")
class TestApiAuthentication(GobysendHttpCase):
    def test_requests_without_a_valid_key_are_refused(self):
        for key, headers in (
            ("", {}),
            ("gbs_00000000_not-a-key-at-all", {}),
            (self.api_key_a[:-2], {}),
            ("", {"Authorization": f"Basic {self.api_key_a}"}),
            ("", {"Authorization": self.api_key_a}),
        ):
            with self.subTest(key=key, headers=headers):
                response = self.api("POST", "/identify", {"id": "C-1"}, key=key, headers=headers)
                detail = self.assertApiError(response, 401)
                self.assertIsInstance(detail, str)
                self.assertEqual(response.headers.get("WWW-Authenticate"), "Bearer")
        self.assertFalse(self.env["gobysend.subscription"].search([("external_id", "=", "C-1")]))

    def test_a_revoked_key_is_refused(self):
        self.assertEqual(self.api("POST", "/identify", {"id": "C-1"}).status_code, 200)
        self.env["gobysend.api.key"]._authenticate(self.api_key_a).action_revoke()
        self.assertApiError(self.api("POST", "/identify", {"id": "C-2"}), 401)
        self.assertFalse(self.env["gobysend.subscription"].search([("external_id", "=", "C-2")]))

    def test_the_key_chooses_the_workspace(self):
        key_b = self.workspace_b.api_key_create("Shop B")
        response = self.api("POST", "/identify", {"id": "C-1", "attributes": {"name": "Minh"}}, key=key_b)
        self.assertEqual(response.status_code, 200, response.text)
        subscription = self.subscription_of(self.workspace_b, response.json()["contact_id"])
        self.assertEqual(subscription.external_id, "C-1")
        self.assertFalse(self.env["gobysend.subscription"].search([("workspace_id", "=", self.workspace_a.id)]))
        # Workspace A knows no C-1, whatever B holds.
        self.assertApiError(self.api("POST", "/track", {"id": "C-1", "name": "x"}), 422, "id")

    def test_rate_limit_per_key(self):
        self.workspace_a.api_rate_limit = 3
        # A fresh key starts a fresh count; stay clear of a minute boundary.
        key = self.workspace_a.api_key_create("Rate limited")
        if datetime.datetime.now().second > 50:
            time.sleep(61 - datetime.datetime.now().second)
        for n in range(3):
            self.assertEqual(self.api("POST", "/identify", {"id": f"C-{n}"}, key=key).status_code, 200)
        response = self.api("POST", "/identify", {"id": "C-3"}, key=key)
        self.assertApiError(response, 429)
        self.assertIn(int(response.headers["Retry-After"]), range(1, 61))
        self.assertFalse(self.env["gobysend.subscription"].search([("external_id", "=", "C-3")]))
        # Another key of the same workspace has its own count.
        other = self.workspace_a.api_key_create("Other")
        self.assertEqual(self.api("POST", "/identify", {"id": "C-3"}, key=other).status_code, 200)


@tagged("post_install", "-at_install")
class TestApiIdentify(GobysendHttpCase):
    def identify(self, payload):
        response = self.api("POST", "/identify", payload)
        self.assertEqual(response.status_code, 200, response.text)
        return response.json()

    def test_identify_creates_then_updates(self):
        created = self.identify(
            {"id": "C-1", "email": "Lan@Example.com", "attributes": {"name": "Lan", "tier": "gold"}}
        )
        self.assertEqual(set(created), {"contact_id", "created"})
        self.assertTrue(created["created"])
        partner = self.env["res.partner"].browse(created["contact_id"])
        self.assertEqual((partner.name, partner.email), ("Lan", "lan@example.com"))
        for ref in ({"id": "C-1"}, {"email": "lan@example.com"}):
            with self.subTest(ref=ref):
                updated = self.identify(dict(ref, attributes={"city": "Huế"}))
                self.assertEqual(updated, {"contact_id": partner.id, "created": False})
        self.assertEqual(partner.city, "Huế")
        self.assertEqual(
            self.env["gobysend.subscription"].search_count([("workspace_id", "=", self.workspace_a.id)]), 1
        )

    def test_phone_is_stored_in_e164_with_the_workspace_country(self):
        created = self.identify({"phone": "0912 345 678"})
        partner = self.env["res.partner"].browse(created["contact_id"])
        self.assertEqual(partner.phone, "+84912345678")
        self.assertEqual(self.identify({"phone": "+84 912-345-678"})["contact_id"], partner.id)
        self.assertApiError(self.api("POST", "/identify", {"phone": "0912"}), 422, "phone")
        self.assertApiError(self.api("POST", "/identify", {"phone": 912345678}), 422, "phone")
        self.assertApiError(
            self.api("POST", "/identify", {"id": "C-1", "attributes": {"phone": "call me"}}), 422, "attributes.phone"
        )

    def test_attributes_are_typed_and_inferred_on_first_sight(self):
        contact_id = self.identify(
            {"id": "C-1", "attributes": {"tier": "gold", "points": 1200, "vip": True, "signup": "2024-05-01"}}
        )["contact_id"]
        attributes = self.env["gobysend.attribute"].search([("workspace_id", "=", self.workspace_a.id)])
        self.assertEqual(
            {attribute.key: attribute.value_type for attribute in attributes},
            {"tier": "string", "points": "number", "vip": "boolean", "signup": "date"},
        )
        values = self.env["gobysend.attribute.value"].search([("partner_id", "=", contact_id)])
        self.assertEqual(
            {value.key: value.value_display for value in values},
            {"tier": "gold", "points": "1200", "vip": "True", "signup": "2024-05-01"},
        )
        detail = self.assertApiError(
            self.api("POST", "/identify", {"id": "C-1", "attributes": {"points": "many"}}), 422, "attributes.points"
        )
        self.assertIn("many", detail[0]["msg"])
        self.assertEqual(values.filtered(lambda value: value.key == "points").value_number, 1200)

    def test_standard_keys_update_the_contact(self):
        contact_id = self.identify(
            {
                "id": "C-1",
                "attributes": {
                    "name": "Trần Minh",
                    "email": "minh@example.com",
                    "phone": "0912345678",
                    "birthday": "1992-09-02",
                    "city": "Hải Phòng",
                    "country_code": "VN",
                    "language": "en-US",
                },
            }
        )["contact_id"]
        self.assertRecordValues(
            self.env["res.partner"].browse(contact_id),
            [
                {
                    "name": "Trần Minh",
                    "email": "minh@example.com",
                    "phone": "+84912345678",
                    "gobysend_birthday": datetime.date(1992, 9, 2),
                    "city": "Hải Phòng",
                    "country_id": self.env.ref("base.vn").id,
                    "lang": "en_US",
                }
            ],
        )
        self.assertFalse(self.env["gobysend.attribute"].search([("workspace_id", "=", self.workspace_a.id)]))

    def test_a_refused_identify_writes_nothing(self):
        self.env["gobysend.attribute"].create(
            {"workspace_id": self.workspace_a.id, "key": "points", "value_type": "number"}
        )
        response = self.api(
            "POST",
            "/identify",
            {"id": "C-1", "email": "new@example.com", "attributes": {"name": "New", "tier": "gold", "points": "lots"}},
        )
        self.assertApiError(response, 422, "attributes.points")
        self.assertFalse(
            self.env["res.partner"].with_context(active_test=False).search([("email", "=", "new@example.com")])
        )
        self.assertFalse(self.env["gobysend.subscription"].search([("workspace_id", "=", self.workspace_a.id)]))
        self.assertFalse(self.env["gobysend.attribute"].search([("key", "=", "tier")]))

    def test_identify_input_errors_name_the_field(self):
        for payload, field in (
            ({}, "id"),
            ({"email": "nope"}, "email"),
            ({"id": ["C-1"]}, "id"),
            ({"id": "C-1", "attributes": "tier=gold"}, "attributes"),
            ({"id": "C-1", "attributes": {"Tier": "gold"}}, "attributes.Tier"),
            ({"id": "C-1", "attributes": {"tier": {"level": 1}}}, "attributes.tier"),
            ({"id": "C-1", "attributes": {"country_code": "XX"}}, "attributes.country_code"),
            ({"id": "C-1", "nickname": "Lan"}, "nickname"),
            ({"id": "C-1", "attributes": {"note": "a\u0000b"}}, "attributes.note"),
        ):
            with self.subTest(payload=payload):
                self.assertApiError(self.api("POST", "/identify", payload), 422, field)
        self.assertFalse(self.env["gobysend.subscription"].search([("workspace_id", "=", self.workspace_a.id)]))


@tagged("post_install", "-at_install")
class TestApiContactsOfOthers(GobysendHttpCase):
    def test_an_api_key_cannot_rewrite_an_odoo_users_contact(self):
        staff = new_test_user(self.env, login="gbs_staff", email="staff@example.com", groups="base.group_user")
        partner = staff.partner_id
        fields = ["name", "email", "phone", "city"]
        before = partner.read(fields)[0]
        hijack = {"name": "Hijacked", "email": "attacker@example.com", "city": "Nowhere"}

        # Matched by email, the user's contact is not adopted: the workspace gets a contact of its own.
        response = self.api("POST", "/identify", {"email": "staff@example.com", "attributes": hijack})
        self.assertEqual(response.status_code, 200, response.text)
        self.assertNotEqual(response.json()["contact_id"], partner.id)
        self.assertEqual(partner.read(fields)[0], before)
        self.assertFalse(self.subscription_of(self.workspace_a, partner))

        # Subscribed to the workspace by a manager, the user's contact is found, yet never rewritten.
        self.env["gobysend.subscription"].create(
            {"workspace_id": self.workspace_a.id, "partner_id": partner.id, "external_id": "STAFF"}
        )
        detail = self.assertApiError(
            self.api("POST", "/identify", {"id": "STAFF", "attributes": hijack}), 409, "attributes.name"
        )
        self.assertIn("Odoo user", detail[0]["msg"])
        response = self.api("POST", "/batch", {"batch": [{"type": "identify", "id": "STAFF", "attributes": hijack}]})
        self.assertEqual(response.status_code, 200, response.text)
        (result,) = response.json()["results"]
        self.assertEqual((result["status"], result["errors"][0]["loc"]), ("error", ["batch", 0, "attributes.name"]))
        self.assertEqual(partner.read(fields)[0], before)
        # Its events and attributes in the workspace are the workspace's own.
        response = self.api("POST", "/identify", {"id": "STAFF", "attributes": {"tier": "gold"}})
        self.assertEqual(response.json(), {"contact_id": partner.id, "created": False})


@tagged("post_install", "-at_install", "time_sensitive")
class TestApiActivity(GobysendHttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.contact_id = cls.ingest.identify(
            cls.workspace_a, {"id": "C-1", "email": "lan@example.com", "phone": "0912345678"}
        )["contact_id"]
        cls.other_id = cls.ingest.identify(cls.workspace_a, {"id": "C-2"})["contact_id"]

    def event(self, response):
        self.assertEqual(response.status_code, 200, response.text)
        return self.env["gobysend.event"].browse(response.json()["event_id"])

    def test_track_stores_the_event(self):
        before = datetime.datetime.now(datetime.UTC).replace(tzinfo=None, microsecond=0)
        response = self.api(
            "POST", "/track", {"email": "lan@example.com", "name": "order_completed", "properties": {"total": 750000}}
        )
        self.assertEqual(set(response.json()), {"event_id", "contact_id", "duplicate"})
        event = self.event(response)
        self.assertRecordValues(
            event,
            [
                {
                    "partner_id": self.contact_id,
                    "name": "order_completed",
                    "kind": "event",
                    "workspace_id": self.workspace_a.id,
                }
            ],
        )
        self.assertEqual(event.properties, {"total": 750000})
        self.assertLessEqual(before, event.timestamp)
        self.assertLessEqual(event.timestamp, datetime.datetime.now(datetime.UTC).replace(tzinfo=None))

    def test_timestamps_as_iso_8601_or_epoch_seconds(self):
        for value in ("2025-06-01T08:00:00Z", "2025-06-01T15:00:00+07:00", 1748764800, 1748764800.0):
            with self.subTest(value=value):
                event = self.event(self.api("POST", "/track", {"id": "C-1", "name": "x", "timestamp": value}))
                self.assertEqual(event.timestamp, datetime.datetime(2025, 6, 1, 8, 0))
        tomorrow = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=2)
        for value in (
            "last tuesday",
            "1999-12-31T23:59:59Z",
            946684799,
            tomorrow.isoformat(),
            1748764800000,
            True,
            [1],
        ):
            with self.subTest(value=value):
                self.assertApiError(
                    self.api("POST", "/track", {"id": "C-1", "name": "x", "timestamp": value}), 422, "timestamp"
                )
        self.assertEqual(len(self.events_of(self.workspace_a)), 4)

    def test_track_input_errors_name_the_field(self):
        for payload, field in (
            ({"id": "C-1"}, "name"),
            ({"id": "C-1", "name": ["x"]}, "name"),
            ({"id": "C-1", "name": "x", "properties": [1, 2]}, "properties"),
            ({"id": "C-1", "name": "x", "message_id": {"id": 1}}, "message_id"),
            ({"id": "C-404", "name": "x"}, "id"),
            ({"email": "nobody@example.com", "name": "x"}, "email"),
            ({"phone": "0987 654 321", "name": "x"}, "phone"),
            ({"name": "x"}, "id"),
            ({"id": "C-1", "name": "x", "colour": "red"}, "colour"),
        ):
            with self.subTest(payload=payload):
                self.assertApiError(self.api("POST", "/track", payload), 422, field)
        self.assertFalse(self.events_of(self.workspace_a))

    def test_malformed_json_is_a_422(self):
        for raw in (
            '{"id": "C-1", "name": ',
            "name=x",
            "[1, 2",
            '{"id": "C-1", "name": "x", "properties": {"n": NaN}}',
        ):
            with self.subTest(raw=raw):
                detail = self.assertApiError(self.api("POST", "/track", raw=raw), 422)
                self.assertEqual(detail[0]["loc"][0], "body")
        self.assertFalse(self.events_of(self.workspace_a))

    def test_a_body_over_5_mib_is_a_413(self):
        padding = "x" * (MAX_BODY_BYTES + 1)
        response = self.api("POST", "/identify", raw=json.dumps({"id": "C-9", "attributes": {"note": padding}}))
        self.assertApiError(response, 413)
        self.assertFalse(self.env["gobysend.subscription"].search([("external_id", "=", "C-9")]))
        # Just under the limit is fine.
        note = "x" * (MAX_BODY_BYTES - 100)
        response = self.api("POST", "/identify", {"id": "C-9", "attributes": {"note": note}})
        self.assertEqual(response.status_code, 200, response.text[:500])

    def test_a_repeated_message_id_is_accepted_and_stored_once(self):
        first = self.api("POST", "/page", {"id": "C-1", "url": "https://shop.example.com/", "message_id": "p-1"})
        again = self.api("POST", "/page", {"id": "C-1", "url": "https://shop.example.com/", "message_id": "p-1"})
        self.assertEqual(again.status_code, 200, again.text)
        self.assertEqual(again.json(), dict(first.json(), duplicate=True))
        self.assertEqual(len(self.events_of(self.workspace_a)), 1)

    def test_page_views(self):
        event = self.event(
            self.api(
                "POST",
                "/page",
                {
                    "phone": "0912 345 678",
                    "url": "https://shop.example.com/p/1",
                    "title": "Áo dài",
                    "referrer": "https://zalo.me",
                },
            )
        )
        self.assertRecordValues(
            event,
            [
                {
                    "kind": "page",
                    "name": "page_view",
                    "url": "https://shop.example.com/p/1",
                    "title": "Áo dài",
                    "referrer": "https://zalo.me",
                    "partner_id": self.contact_id,
                }
            ],
        )
        self.assertApiError(self.api("POST", "/page", {"id": "C-1", "title": "No URL"}), 422, "url")
        self.assertApiError(self.api("POST", "/page", {"id": "C-1", "url": " "}), 422, "url")

    def test_devices_follow_the_latest_contact_and_can_be_removed(self):
        token = "fcm:APA91b-token/with/slashes"
        response = self.api("POST", "/devices", {"id": "C-1", "token": token, "platform": "android"})
        self.assertEqual(response.status_code, 200, response.text)
        device = self.env["gobysend.device"].browse(response.json()["device_id"])
        self.assertEqual(response.json(), {"device_id": device.id, "contact_id": self.contact_id, "active": True})
        response = self.api("POST", "/devices", {"id": "C-2", "token": token, "platform": "android"})
        self.assertEqual(response.json()["device_id"], device.id)
        self.assertEqual(device.partner_id.id, self.other_id)
        self.assertEqual(self.env["gobysend.device"].search_count([("token", "=", token)]), 1)

        quoted = token.replace("/", "%2F").replace(":", "%3A")
        response = self.api("DELETE", f"/devices/{quoted}")
        self.assertEqual(response.status_code, 200, response.text)
        self.assertEqual(response.json(), {"device_id": device.id, "contact_id": None, "active": False})
        self.assertFalse(device.active)
        self.assertEqual(self.api("DELETE", f"/devices/{quoted}").status_code, 200, "a retried removal succeeds")
        self.assertApiError(self.api("DELETE", "/devices/unknown-token"), 404, "token")
        self.assertApiError(
            self.api("POST", "/devices", {"id": "C-1", "token": "t", "platform": "blackberry"}), 422, "platform"
        )
        self.assertApiError(self.api("POST", "/devices", {"id": "C-1", "platform": "ios"}), 422, "token")

    def test_unsubscribe_from_email_uses_the_odoo_blacklist(self):
        response = self.api("POST", "/unsubscribe", {"email": "lan@example.com", "channel": "email"})
        self.assertEqual(response.status_code, 200, response.text)
        self.assertEqual(response.json(), {"contact_id": self.contact_id, "channel": "email", "state": "unsubscribed"})
        subscription = self.subscription_of(self.workspace_a, self.contact_id)
        self.assertEqual((subscription.email_state, subscription.sms_state), ("unsubscribed", "subscribed"))
        self.assertTrue(self.env["mail.blacklist"].search([("email", "=", "lan@example.com")]))
        self.assertFalse(self.env["phone.blacklist"].search([("number", "=", "+84912345678")]))

    def test_unsubscribe_from_sms_uses_the_phone_blacklist(self):
        response = self.api("POST", "/unsubscribe", {"id": "C-1", "channel": "sms"})
        self.assertEqual(response.status_code, 200, response.text)
        subscription = self.subscription_of(self.workspace_a, self.contact_id)
        self.assertEqual((subscription.email_state, subscription.sms_state), ("subscribed", "unsubscribed"))
        self.assertTrue(self.env["phone.blacklist"].search([("number", "=", "+84912345678")]))
        self.assertFalse(self.env["mail.blacklist"].search([("email", "=", "lan@example.com")]))
        self.assertApiError(self.api("POST", "/unsubscribe", {"id": "C-1", "channel": "fax"}), 422, "channel")
        self.assertApiError(self.api("POST", "/unsubscribe", {"id": "C-404", "channel": "sms"}), 422, "id")


@tagged("post_install", "-at_install")
class TestApiBatch(GobysendHttpCase):
    def test_a_mixed_batch_answers_every_item(self):
        response = self.api(
            "POST",
            "/batch",
            {
                "batch": [
                    {"type": "identify", "id": "C-1", "email": "lan@example.com"},
                    {"type": "track", "id": "C-1", "name": "signed_up", "message_id": "m-1"},
                    {"type": "track", "id": "C-1", "name": "signed_up", "message_id": "m-1"},
                    {"type": "page", "id": "C-1", "url": "https://shop.example.com/"},
                    {"type": "device", "id": "C-1", "token": "tok-1", "platform": "ios"},
                    {"type": "track", "id": "C-404", "name": "lost"},
                    {"type": "track", "id": "C-1", "name": "late", "timestamp": "2099-01-01T00:00:00Z"},
                    ["not", "an", "object"],
                    {"type": "unsubscribe", "id": "C-1", "channel": "email"},
                ]
            },
        )
        self.assertEqual(response.status_code, 200, response.text)
        body = response.json()
        self.assertEqual((body["accepted"], body["rejected"]), (5, 4))
        results = body["results"]
        self.assertEqual([result["index"] for result in results], list(range(9)))
        self.assertEqual(
            [result["status"] for result in results], ["ok", "ok", "ok", "ok", "ok", "error", "error", "error", "error"]
        )
        contact_id = results[0]["contact_id"]
        self.assertTrue(results[0]["created"])
        self.assertEqual(results[2], dict(results[1], index=2, duplicate=True))
        self.assertEqual(results[4]["contact_id"], contact_id)
        self.assertNotIn("errors", results[0])
        self.assertEqual(results[5]["errors"][0]["loc"], ["batch", 5, "id"])
        self.assertEqual(results[6]["errors"][0]["loc"], ["batch", 6, "timestamp"])
        self.assertEqual(results[7]["errors"][0]["loc"], ["batch", 7, "type"])
        self.assertEqual(results[8]["errors"][0]["loc"], ["batch", 8, "type"])
        self.assertEqual(sorted(self.events_of(self.workspace_a).mapped("name")), ["page_view", "signed_up"])
        self.assertEqual(self.subscription_of(self.workspace_a, contact_id).email_state, "subscribed")

    def test_batch_size_and_shape(self):
        detail = self.assertApiError(
            self.api("POST", "/batch", {"batch": [{"type": "identify", "id": "C-1"}] * 1001}), 422, "batch"
        )
        self.assertIn("1000", detail[0]["msg"])
        self.assertFalse(self.env["gobysend.subscription"].search([("workspace_id", "=", self.workspace_a.id)]))
        self.assertApiError(self.api("POST", "/batch", {"batch": {"type": "identify"}}), 422, "batch")
        self.assertApiError(self.api("POST", "/batch", {"items": []}), 422, "batch")
        response = self.api("POST", "/batch", {"batch": []})
        self.assertEqual(response.json(), {"accepted": 0, "rejected": 0, "results": []})


@tagged("post_install", "-at_install")
class TestApiDocumentation(GobysendHttpCase):
    def openapi(self):
        response = self.opener.get(self.base_url() + self.api_root + "/openapi.json", timeout=30)
        self.assertEqual(response.status_code, 200, response.text)
        return response.json()

    def test_the_device_schema_states_what_the_api_accepts(self):
        schemas = self.openapi()["components"]["schemas"]
        token = schemas["DeviceRequest"]["properties"]["token"]
        self.assertEqual((token["minLength"], token["maxLength"]), (1, 2048))
        self.assertIn("pattern", token)
        platforms = schemas["DeviceRequest"]["properties"]["platform"]["enum"]
        self.assertEqual(sorted(platforms), ["android", "ios", "web"])
        self.assertEqual(schemas["BatchRequest"]["properties"]["batch"]["maxItems"], 1000)
        self.ingest.identify(self.workspace_a, {"id": "C-1"})

        # Whatever the document allows, the API accepts...
        @settings(
            max_examples=40, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck)
        )
        @given(
            token=st.from_regex(token["pattern"]).filter(lambda text: len(text) <= token["maxLength"]),
            platform=st.sampled_from(platforms),
        )
        def accepted(token, platform):
            response = self.api("POST", "/devices", {"id": "C-1", "token": token, "platform": platform})
            self.assertEqual(response.status_code, 200, response.text)

        accepted()
        # ...and what it refuses, the API refuses, in the same words for a single call and a batch.
        for bad in ("two words", "tab\tinside", "jeton-é", "x" * 2049, "", "   "):
            with self.subTest(token=bad):
                self.assertApiError(
                    self.api("POST", "/devices", {"id": "C-1", "token": bad, "platform": "ios"}), 422, "token"
                )
                with self.assertInvalidInput("token"):
                    self.ingest.register_device(self.workspace_a, {"id": "C-1", "token": bad, "platform": "ios"})

    def test_openapi_documents_every_path(self):
        response = self.opener.get(self.base_url() + self.api_root + "/openapi.json", timeout=30)
        self.assertEqual(response.status_code, 200, response.text)
        document = response.json()
        self.assertEqual(document["info"]["title"], "Gobysend Tracking API")
        expected = {
            "/identify": {"post"},
            "/track": {"post"},
            "/page": {"post"},
            "/devices": {"post"},
            "/devices/{token}": {"delete"},
            "/unsubscribe": {"post"},
            "/batch": {"post"},
        }
        for route in router.routes:
            expected.setdefault(route.path_format, set()).update(method.lower() for method in route.methods)
        paths = document["paths"]
        self.assertEqual(set(paths), set(expected))
        for path, methods in expected.items():
            for method in methods:
                with self.subTest(path=path, method=method):
                    operation = paths[path][method]
                    self.assertTrue(operation.get("summary"))
                    self.assertLessEqual({"200", "401", "413", "422", "429"}, set(operation["responses"]))
                    self.assertTrue(operation.get("security"), "every operation asks for the API key")
        self.assertIn("HTTPBearer", document["components"]["securitySchemes"])
        for schema in (
            "IdentifyRequest",
            "TrackRequest",
            "PageRequest",
            "DeviceRequest",
            "UnsubscribeRequest",
            "BatchRequest",
        ):
            self.assertIn(schema, document["components"]["schemas"])
