"""The tracking API as a client sees it: a running Odoo, real HTTP, results read back over XML-RPC."""

import calendar
import http.client
import json
import threading
import time
import xmlrpc.client
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

EXPECTED_PATHS = {"/identify", "/track", "/page", "/devices", "/devices/{token}", "/unsubscribe", "/batch"}
CHANNELS = ("email", "sms", "zalo", "push")
API_ROOT = "/gobysend/api/v1"


@pytest.fixture
def workspace(make_workspace):
    """A fresh workspace of our own: (id, Api)."""
    return make_workspace()


def identify(api, payload):
    response = api.post("/identify", payload)
    assert response.status_code == 200, response.text
    return response.json()["contact_id"]


def events_of(admin, workspace_id, *domain, fields=("name", "kind", "partner_id", "message_id")):
    return admin.call(
        "gobysend.event", "search_read", [("workspace_id", "=", workspace_id), *domain], fields=list(fields), order="id"
    )


def subscription_of(admin, workspace_id, external_id, fields=None):
    (subscription,) = admin.call(
        "gobysend.subscription",
        "search_read",
        [("workspace_id", "=", workspace_id), ("external_id", "=", external_id)],
        fields=fields or ["partner_id", *(f"{channel}_state" for channel in CHANNELS)],
    )
    return subscription


def assert_field_error(response, status, field):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail, detail
    assert any(error["loc"][-1] == field for error in detail), detail


# ---------------------------------------------------------------------------
# Contacts, attributes, events
# ---------------------------------------------------------------------------


def test_identify_creates_then_updates_contact_and_attributes(admin, workspace):
    workspace_id, api = workspace
    first = api.post(
        "/identify",
        {
            "id": "C-1",
            "email": "Lan.Nguyen@Example.com",
            "attributes": {"name": "Nguyễn Lan", "tier": "gold", "points": 1200},
        },
    )
    assert first.status_code == 200, first.text
    assert first.json()["created"] is True
    contact_id = first.json()["contact_id"]

    again = api.post("/identify", {"id": "C-1", "attributes": {"tier": "platinum", "vip": True}})
    assert again.status_code == 200, again.text
    assert again.json() == {"contact_id": contact_id, "created": False}

    # The same person found by email alone is the same contact.
    by_email = api.post("/identify", {"email": "lan.nguyen@example.com"})
    assert by_email.json() == {"contact_id": contact_id, "created": False}

    (partner,) = admin.call("res.partner", "read", [contact_id], ["name", "email"])
    assert partner["name"] == "Nguyễn Lan"
    assert partner["email"] == "lan.nguyen@example.com"
    assert subscription_of(admin, workspace_id, "C-1")["partner_id"][0] == contact_id

    values = admin.call(
        "gobysend.attribute.value",
        "search_read",
        [("partner_id", "=", contact_id), ("workspace_id", "=", workspace_id)],
        fields=["key", "value_type", "value_display"],
    )
    by_key = {value["key"]: value for value in values}
    assert set(by_key) == {"tier", "points", "vip"}
    assert (by_key["tier"]["value_type"], by_key["tier"]["value_display"]) == ("string", "platinum")
    assert (by_key["points"]["value_type"], by_key["points"]["value_display"]) == ("number", "1200")
    assert by_key["vip"]["value_type"] == "boolean"

    # Clearing an attribute removes its value.
    assert api.post("/identify", {"id": "C-1", "attributes": {"vip": None}}).status_code == 200
    keys = {
        value["key"]
        for value in admin.call(
            "gobysend.attribute.value", "search_read", [("partner_id", "=", contact_id)], fields=["key"]
        )
    }
    assert keys == {"tier", "points"}


@pytest.mark.time_sensitive
def test_track_and_page_store_events(admin, workspace):
    workspace_id, api = workspace
    contact_id = identify(api, {"id": "C-2", "email": "an@example.com"})

    tracked = api.post(
        "/track",
        {
            "id": "C-2",
            "name": "order_completed",
            "properties": {"total": 750000, "currency": "VND", "items": [1, 2]},
            "timestamp": "2026-01-15T08:30:00Z",
            "message_id": "order-1",
        },
    )
    assert tracked.status_code == 200, tracked.text
    body = tracked.json()
    assert body["contact_id"] == contact_id and body["duplicate"] is False

    page = api.post(
        "/page",
        {
            "email": "an@example.com",
            "url": "https://shop.example.com/p/42",
            "title": "Áo dài",
            "referrer": "https://x.example",
        },
    )
    assert page.status_code == 200, page.text

    events = admin.call(
        "gobysend.event",
        "read",
        [body["event_id"], page.json()["event_id"]],
        ["name", "kind", "partner_id", "properties", "timestamp", "message_id", "url", "title", "referrer"],
    )
    order, view = events
    assert (order["name"], order["kind"], order["partner_id"][0]) == ("order_completed", "event", contact_id)
    assert order["properties"] == {"total": 750000, "currency": "VND", "items": [1, 2]}
    assert order["timestamp"] == "2026-01-15 08:30:00"
    assert order["message_id"] == "order-1"
    assert (view["name"], view["kind"], view["partner_id"][0]) == ("page_view", "page", contact_id)
    assert (view["url"], view["title"], view["referrer"]) == (
        "https://shop.example.com/p/42",
        "Áo dài",
        "https://x.example",
    )
    assert len(events_of(admin, workspace_id)) == 2


def test_events_of_unknown_contacts_are_refused_and_not_stored(admin, workspace):
    workspace_id, api = workspace
    assert_field_error(api.post("/track", {"id": "nobody", "name": "x"}), 422, "id")
    assert_field_error(api.post("/page", {"email": "nobody@example.com", "url": "https://x.example"}), 422, "email")
    assert events_of(admin, workspace_id) == []


def test_unsubscribe_sets_consent_per_channel_and_logs_it(admin, workspace):
    workspace_id, api = workspace
    contact_id = identify(api, {"id": "C-3", "email": "binh@example.com"})
    identify(api, {"id": "C-4", "email": "chi@example.com"})

    response = api.post("/unsubscribe", {"id": "C-3", "channel": "email"})
    assert response.status_code == 200, response.text
    assert response.json() == {"contact_id": contact_id, "channel": "email", "state": "unsubscribed"}
    subscription = subscription_of(admin, workspace_id, "C-3")
    assert subscription["email_state"] == "unsubscribed"
    assert subscription["sms_state"] == subscription["zalo_state"] == subscription["push_state"] == "subscribed"
    logs = admin.call(
        "gobysend.consent.log",
        "search_read",
        [("subscription_id", "=", subscription["id"]), ("state", "=", "unsubscribed")],
        fields=["channel", "source"],
    )
    assert [(log["channel"], log["source"]) for log in logs] == [("email", "api")]
    # Odoo's own blacklist follows, so that no other app emails the contact either.
    assert admin.call("mail.blacklist", "search_count", [("email", "=", "binh@example.com")]) == 1

    assert api.post("/unsubscribe", {"id": "C-4", "channel": "all"}).status_code == 200
    other = subscription_of(admin, workspace_id, "C-4")
    assert {other[f"{channel}_state"] for channel in CHANNELS} == {"unsubscribed"}

    assert_field_error(api.post("/unsubscribe", {"id": "C-3", "channel": "fax"}), 422, "channel")
    assert_field_error(api.post("/unsubscribe", {"id": "nobody", "channel": "sms"}), 422, "id")


def test_device_moves_to_the_contact_that_claims_it_last(admin, workspace):
    workspace_id, api = workspace
    lan = identify(api, {"id": "C-5"})
    minh = identify(api, {"id": "C-6"})

    first = api.post("/devices", {"id": "C-5", "token": "push-token-1", "platform": "android"})
    assert first.status_code == 200, first.text
    device_id = first.json()["device_id"]
    second = api.post("/devices", {"id": "C-6", "token": "push-token-1", "platform": "android"})
    assert second.status_code == 200, second.text
    assert second.json() == {"device_id": device_id, "contact_id": minh, "active": True}

    devices = admin.call(
        "gobysend.device",
        "search_read",
        [("workspace_id", "=", workspace_id)],
        fields=["partner_id", "token", "active"],
    )
    assert [(device["id"], device["partner_id"][0], device["active"]) for device in devices] == [
        (device_id, minh, True)
    ]
    assert lan != minh

    removed = api.request("DELETE", "/devices/push-token-1")
    assert removed.status_code == 200, removed.text
    assert removed.json()["active"] is False
    (device,) = admin.call("gobysend.device", "read", [device_id], ["active"])
    assert device["active"] is False

    assert_field_error(api.post("/devices", {"id": "C-5", "token": "t", "platform": "symbian"}), 422, "platform")


# ---------------------------------------------------------------------------
# Idempotency
# ---------------------------------------------------------------------------


def test_retried_message_id_is_stored_once(admin, workspace):
    workspace_id, api = workspace
    identify(api, {"id": "C-7"})
    payload = {"id": "C-7", "name": "checkout", "message_id": "retry-1"}
    first, second = api.post("/track", payload), api.post("/track", payload)
    assert (first.status_code, second.status_code) == (200, 200), (first.text, second.text)
    assert first.json()["duplicate"] is False
    assert second.json()["duplicate"] is True
    assert second.json()["event_id"] == first.json()["event_id"]
    assert len(events_of(admin, workspace_id, ("message_id", "=", "retry-1"))) == 1


def test_concurrent_retries_store_exactly_one_event(admin, make_workspace):
    workspace_id, api = make_workspace()
    identify(api, {"id": "C-8"})
    threads = 6
    barrier = threading.Barrier(threads, timeout=30)

    def send(_index):
        # Each thread has its own connection; they all fire at the same moment.
        client = api.clone()
        barrier.wait()
        return client.post("/track", {"id": "C-8", "name": "paid", "message_id": "race-1"})

    with ThreadPoolExecutor(threads) as pool:
        responses = list(pool.map(send, range(threads)))
    assert [response.status_code for response in responses] == [200] * threads, [r.text for r in responses]
    bodies = [response.json() for response in responses]
    assert len({body["event_id"] for body in bodies}) == 1, bodies
    assert sorted(body["duplicate"] for body in bodies) == [False] + [True] * (threads - 1), bodies
    assert len(events_of(admin, workspace_id, ("message_id", "=", "race-1"))) == 1

    # The same holds for batches racing each other.
    batch = {
        "batch": [{"type": "track", "id": "C-8", "name": "paid", "message_id": f"race-batch-{i}"} for i in range(20)]
    }
    barrier.reset()

    def send_batch(_index):
        client = api.clone()
        barrier.wait()
        return client.post("/batch", batch)

    with ThreadPoolExecutor(threads) as pool:
        responses = list(pool.map(send_batch, range(threads)))
    assert [response.status_code for response in responses] == [200] * threads, [r.text for r in responses]
    stored = events_of(admin, workspace_id, ("message_id", "like", "race-batch-%"))
    assert sorted(event["message_id"] for event in stored) == sorted(f"race-batch-{i}" for i in range(20))
    fresh = sum(1 for response in responses for result in response.json()["results"] if not result["duplicate"])
    assert fresh == 20


# ---------------------------------------------------------------------------
# Batch
# ---------------------------------------------------------------------------


def test_batch_stores_only_the_good_items(admin, workspace):
    workspace_id, api = workspace
    known = identify(api, {"id": "C-9"})
    items = [
        {"type": "track", "id": "C-9", "name": "viewed", "message_id": "b-0"},  # 0 ok
        {"type": "track", "id": "C-9", "message_id": "b-1"},  # 1 no name
        {"type": "track", "id": "ghost", "name": "viewed", "message_id": "b-2"},  # 2 unknown contact
        "not an object",  # 3
        {"type": "teleport", "id": "C-9"},  # 4 unknown type
        {"type": "page", "id": "C-9", "url": "https://shop.example.com", "message_id": "b-5"},  # 5 ok
        {"type": "identify", "id": "C-10", "email": "not-an-email"},  # 6 bad email
        {"type": "identify", "id": "C-11", "attributes": {"tier": "silver"}},  # 7 ok, new contact
        {"type": "track", "id": "C-11", "name": "signed_up", "message_id": "b-8"},  # 8 ok, after its identify
        {"type": "track", "id": "C-9", "name": "viewed", "message_id": "b-0"},  # 9 duplicate of 0
        {"type": "track", "id": "C-9", "name": "x", "timestamp": "yesterday-ish", "message_id": "b-10"},  # 10 bad time
        {"type": "device", "id": "C-9", "token": "tok-b", "platform": "ios"},  # 11 ok
    ]
    response = api.post("/batch", {"batch": items})
    assert response.status_code == 200, response.text
    body = response.json()
    statuses = [result["status"] for result in body["results"]]
    assert statuses == ["ok", "error", "error", "error", "error", "ok", "error", "ok", "ok", "ok", "error", "ok"]
    assert [result["index"] for result in body["results"]] == list(range(len(items)))
    assert (body["accepted"], body["rejected"]) == (6, 6)
    errors = {result["index"]: result["errors"][0]["loc"] for result in body["results"] if result["status"] == "error"}
    assert errors == {
        1: ["batch", 1, "name"],
        2: ["batch", 2, "id"],
        3: ["batch", 3, "type"],
        4: ["batch", 4, "type"],
        6: ["batch", 6, "email"],
        10: ["batch", 10, "timestamp"],
    }
    assert body["results"][9]["duplicate"] is True
    assert body["results"][9]["event_id"] == body["results"][0]["event_id"]

    stored = events_of(admin, workspace_id)
    assert sorted(event["message_id"] for event in stored) == ["b-0", "b-5", "b-8"]
    new_contact = body["results"][7]["contact_id"]
    assert {event["message_id"]: event["partner_id"][0] for event in stored} == {
        "b-0": known,
        "b-5": known,
        "b-8": new_contact,
    }
    externals = admin.call(
        "gobysend.subscription", "search_read", [("workspace_id", "=", workspace_id)], fields=["external_id"]
    )
    assert sorted(s["external_id"] for s in externals) == ["C-11", "C-9"]
    assert (
        admin.call("gobysend.device", "search_count", [("workspace_id", "=", workspace_id), ("token", "=", "tok-b")])
        == 1
    )


def test_batch_finds_contacts_by_id_email_or_phone(admin, workspace):
    workspace_id, api = workspace
    by_id = identify(api, {"id": "C-20", "email": "dung@example.com"})
    by_phone = identify(api, {"phone": "0912 345 678"})
    items = [
        {"type": "track", "id": "C-20", "name": "a", "message_id": "f-0"},
        {"type": "track", "email": "DUNG@example.com", "name": "a", "message_id": "f-1"},
        {"type": "track", "phone": "+84 912 345 678", "name": "a", "message_id": "f-2"},
        # An unknown id falls back to the email, as it does for single events.
        {"type": "track", "id": "C-unknown", "email": "dung@example.com", "name": "a", "message_id": "f-3"},
        {"type": "track", "email": "nobody@example.com", "name": "a", "message_id": "f-4"},
        # An identify in the middle of the batch gives the next items a new contact and email.
        {"type": "identify", "id": "C-21", "email": "em@example.com"},
        {"type": "track", "email": "em@example.com", "name": "a", "message_id": "f-6"},
        {"type": "identify", "id": "C-20", "attributes": {"email": "dung.new@example.com"}},
        {"type": "page", "email": "dung.new@example.com", "url": "https://x.example", "message_id": "f-8"},
        {"type": "track", "email": "dung@example.com", "name": "a", "message_id": "f-9"},
    ]
    response = api.post("/batch", {"batch": items})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    new_contact = results[5]["contact_id"]
    assert [result["status"] for result in results] == ["ok"] * 4 + ["error"] + ["ok"] * 4 + ["error"]
    assert [result.get("contact_id") for result in results] == [
        by_id,
        by_id,
        by_phone,
        by_id,
        None,
        new_contact,
        new_contact,
        by_id,
        by_id,
        None,
    ]
    assert results[4]["errors"][0]["loc"] == ["batch", 4, "email"]
    stored = {event["message_id"]: event["partner_id"][0] for event in events_of(admin, workspace_id)}
    assert stored == {"f-0": by_id, "f-1": by_id, "f-2": by_phone, "f-3": by_id, "f-6": new_contact, "f-8": by_id}


def test_batch_limits(workspace):
    _workspace_id, api = workspace
    too_many = api.post("/batch", {"batch": [{"type": "track", "id": "x", "name": "y"}] * 1001})
    assert_field_error(too_many, 422, "batch")
    assert_field_error(api.post("/batch", {"items": []}), 422, "batch")


# ---------------------------------------------------------------------------
# Errors: 401, 413, 422, 429
# ---------------------------------------------------------------------------


def test_requests_without_a_valid_key_are_refused(admin, workspace):
    workspace_id, api = workspace
    for key in ("", "gbs_not_a_key", api.key[:-1] + ("A" if api.key[-1] != "A" else "B")):
        response = api.post("/identify", {"id": "intruder"}, key=key)
        assert response.status_code == 401, (key, response.text)
        assert response.headers.get("WWW-Authenticate") == "Bearer"
        assert isinstance(response.json()["detail"], str) and response.json()["detail"]
    assert admin.call("gobysend.subscription", "search_count", [("workspace_id", "=", workspace_id)]) == 0


def test_oversized_body_is_refused_with_413(workspace):
    _workspace_id, api = workspace
    body = b'{"batch": [' + b" " * (5 * 1024 * 1024) + b"]}"
    response = api.request("POST", "/batch", data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413, response.text[:500]
    assert "larger than" in response.json()["detail"]


def test_invalid_input_answers_422_naming_the_field(workspace):
    _workspace_id, api = workspace
    identify(api, {"id": "C-12"})
    assert_field_error(api.post("/track", {"id": "C-12"}), 422, "name")
    assert_field_error(api.post("/track", {"id": "C-12", "name": "x", "colour": "red"}), 422, "colour")
    assert_field_error(api.post("/track", {"id": "C-12", "name": "x", "properties": [1]}), 422, "properties")
    assert_field_error(api.post("/track", {"id": "C-12", "name": "x", "timestamp": "not a date"}), 422, "timestamp")
    assert_field_error(api.post("/identify", {"id": "C-12", "email": "nope"}), 422, "email")
    assert_field_error(api.post("/identify", {"id": "C-12", "attributes": {"Bad Key": 1}}), 422, "attributes.Bad Key")
    assert_field_error(api.post("/page", {"id": "C-12"}), 422, "url")
    assert_field_error(api.post("/identify", {}), 422, "id")
    broken = api.request("POST", "/track", data=b"{not json", headers={"Content-Type": "application/json"})
    assert broken.status_code == 422, broken.text
    assert isinstance(broken.json()["detail"], list)


@pytest.mark.time_sensitive
def test_rate_limit_answers_429_with_retry_after(make_workspace):
    limit = 3
    _workspace_id, api = make_workspace(api_rate_limit=limit)
    statuses = []
    response = None
    # The counter resets at each minute: allow for one boundary falling inside the loop.
    for _attempt in range(2 * limit + 2):
        response = api.post("/identify", {"id": "C-13"})
        statuses.append(response.status_code)
        if response.status_code == 429:
            break
    assert statuses[-1] == 429, statuses
    assert statuses[:limit] == [200] * limit, statuses
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert response.json()["detail"]


# ---------------------------------------------------------------------------
# OpenAPI and keys
# ---------------------------------------------------------------------------


def test_openapi_document_lists_every_path(base_url):
    response = requests.get(base_url + "/gobysend/api/v1/openapi.json", timeout=30)
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["info"]["title"] == "Gobysend Tracking API"
    assert EXPECTED_PATHS <= set(document["paths"]), sorted(document["paths"])
    assert "post" in document["paths"]["/batch"] and "delete" in document["paths"]["/devices/{token}"]
    schemas = document["components"]["schemas"]
    assert {"TrackRequest", "IdentifyRequest", "BatchRequest", "EventResponse"} <= set(schemas)


def key_record(admin, plaintext):
    (key,) = admin.call(
        "gobysend.api.key",
        "search_read",
        [("prefix", "=", plaintext[:12])],
        fields=["active", "last_used_at", "revoked_at"],
        context={"active_test": False},
    )
    return key


def test_revoked_key_is_refused(admin, make_workspace):
    workspace_id, api = make_workspace()
    assert api.post("/identify", {"id": "C-14"}).status_code == 200
    key = key_record(admin, api.key)
    admin.call("gobysend.api.key", "action_revoke", [key["id"]])
    revoked = key_record(admin, api.key)
    assert revoked["active"] is False and revoked["revoked_at"]

    response = api.post("/identify", {"id": "C-15"})
    assert response.status_code == 401, response.text
    assert response.json()["detail"]
    # Another key of the same workspace keeps working.
    other = admin.call("gobysend.workspace", "api_key_create", [workspace_id], "Replacement")
    assert api.post("/identify", {"id": "C-15"}, key=other).status_code == 200


@pytest.mark.time_sensitive
def test_key_records_when_it_was_last_used(admin, make_workspace):
    _workspace_id, api = make_workspace()
    assert key_record(admin, api.key)["last_used_at"] is False
    before = time.time()
    assert api.post("/identify", {"id": "C-16"}).status_code == 200
    used = key_record(admin, api.key)["last_used_at"]
    assert used, "last_used_at was not set"
    # Odoo writes naive UTC: read it as UTC whatever the local zone and its daylight saving.
    used_epoch = calendar.timegm(time.strptime(used, "%Y-%m-%d %H:%M:%S"))
    assert before - 120 <= used_epoch <= time.time() + 120


def test_workspace_keys_cannot_be_created_by_plain_users(admin, make_rpc, unique):
    """``api_key_create`` is public over XML-RPC, but only for Gobysend managers."""
    workspace_id = admin.call("gobysend.workspace", "create", {"name": f"Keys {unique}"})
    user_group = admin.xmlid("gobysend_automation.group_gobysend_user")
    login = f"e2e_keys_{unique}"
    user_id = admin.call(
        "res.users",
        "create",
        {"name": login, "login": login, "password": f"pw-{unique}", "groups_id": [(6, 0, [user_group])]},
    )
    admin.call("gobysend.workspace", "write", [workspace_id], {"member_ids": [(4, user_id)]})
    user = make_rpc(login, f"pw-{unique}")
    with pytest.raises(xmlrpc.client.Fault):
        user.call("gobysend.workspace", "api_key_create", [workspace_id], "Sneaky")
    assert admin.call("gobysend.api.key", "search_count", [("workspace_id", "=", workspace_id)]) == 0


# ---------------------------------------------------------------------------
# Untrusted input: bodies, headers and concurrency as real clients produce them
# ---------------------------------------------------------------------------


def chunks(data, size=64 * 1024):
    """A generator body: ``requests`` sends it chunked, without Content-Length."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_chunked_bodies_are_read_and_limited_to_5_mib(admin, workspace):
    workspace_id, api = workspace
    small = json.dumps({"id": "C-chunked", "attributes": {"tier": "gold"}}).encode()
    response = api.request("POST", "/identify", data=chunks(small, 8), headers={"Content-Type": "application/json"})
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in response.request.headers
    assert response.status_code == 200, response.text
    assert (
        subscription_of(admin, workspace_id, "C-chunked", fields=["partner_id"])["partner_id"][0]
        == (response.json()["contact_id"])
    )

    padding = "x" * (5 * 1024 * 1024)
    large = json.dumps({"id": "C-too-large", "attributes": {"note": padding}}).encode()
    response = api.request("POST", "/identify", data=chunks(large), headers={"Content-Type": "application/json"})
    assert response.status_code == 413, response.text[:500]
    assert "larger than" in response.json()["detail"]
    assert admin.call("gobysend.subscription", "search_count", [("external_id", "=", "C-too-large")]) == 0


def raw_request(base_url, method, path, headers, body=b""):
    """One request with exactly these header bytes (``requests`` would encode or refuse some)."""
    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.putrequest(method, API_ROOT + path, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


BODY = b'{"id": "C-headers"}'
KEY = object()  # stands for "Bearer <the workspace's key>"
UNTRUSTED_INPUT = {
    # A key that is no key at all: other alphabets, control characters, any length.
    "latin-1 key": ({"Authorization": "Bearer gbs_\xe9\xe9\xe9\xe9_\xe9\xe9\xe9".encode("latin-1")}, BODY, 401),
    "utf-8 key": ({"Authorization": "Bearer gbs_ñandú_sí".encode()}, BODY, 401),
    "control characters in the key": ({"Authorization": b"Bearer gbs_0000\x00\x01_" + b"A" * 40}, BODY, 401),
    "a huge key": ({"Authorization": b"Bearer " + b"A" * 10000}, BODY, 401),
    "latin-1 scheme": ({"Authorization": "B\xe9arer x".encode("latin-1")}, BODY, 401),
    # A language preference that does not parse is ignored.
    "q-value not a number": ({"Authorization": KEY, "Accept-Language": b"fr;q=#E"}, BODY, 200),
    "empty language ranges": ({"Authorization": KEY, "Accept-Language": b";;;"}, BODY, 200),
    "latin-1 q-value": ({"Authorization": KEY, "Accept-Language": "vi-VN;q=\xff".encode("latin-1")}, BODY, 200),
    # A body that is not UTF-8.
    "latin-1 body": ({"Authorization": KEY}, b'{"id": "C-\xff\xfe"}', 400),
    "utf-16 body": ({"Authorization": KEY}, '{"id": "C-1"}'.encode("utf-16"), 400),
}


@pytest.mark.parametrize("case", UNTRUSTED_INPUT)
def test_headers_and_bodies_a_client_sends_never_cause_a_server_error(case, workspace, base_url, server_log):
    _workspace_id, api = workspace
    headers, payload, expected = UNTRUSTED_INPUT[case]
    headers = {
        "Content-Type": "application/json",
        **{name: f"Bearer {api.key}".encode() if value is KEY else value for name, value in headers.items()},
    }
    status, answer = raw_request(base_url, "POST", "/identify", headers, payload)
    assert status == expected, answer[:300]
    if status == 400:
        assert json.loads(answer)["detail"][0]["loc"] == ["body"], answer
    log = server_log()
    assert " ERROR " not in log and "Traceback" not in log, log[-3000:]


def test_removing_an_unknown_device_is_a_404(workspace):
    _workspace_id, api = workspace
    identify(api, {"id": "C-device"})
    response = api.request("DELETE", "/devices/never-registered")
    assert_field_error(response, 404, "token")
    assert api.post("/devices", {"id": "C-device", "token": "tok-404", "platform": "web"}).status_code == 200
    assert api.request("DELETE", "/devices/tok-404").status_code == 200


@pytest.mark.parametrize("identifiers", [{"id": "C-race"}, {"email": "race@example.com"}, {"phone": "0912 000 999"}])
def test_concurrent_identify_of_one_new_contact_all_succeed(admin, make_workspace, identifiers):
    workspace_id, api = make_workspace()
    threads = 6
    barrier = threading.Barrier(threads, timeout=30)

    def send(index):
        client = api.clone()
        barrier.wait()
        return client.post("/identify", dict(identifiers, attributes={"visits": index}))

    with ThreadPoolExecutor(threads) as pool:
        responses = list(pool.map(send, range(threads)))
    assert [response.status_code for response in responses] == [200] * threads, [r.text for r in responses]
    bodies = [response.json() for response in responses]
    assert len({body["contact_id"] for body in bodies}) == 1, bodies
    assert sorted(body["created"] for body in bodies) == [False] * (threads - 1) + [True], bodies
    assert admin.call("gobysend.subscription", "search_count", [("workspace_id", "=", workspace_id)]) == 1
