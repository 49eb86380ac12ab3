"""Workspace isolation on a running server: restricted users reach only their own workspace's data,
whether they come in over XML-RPC or over the web client's JSON-RPC."""

import itertools
import uuid
import xmlrpc.client

import pytest
import requests

WORKSPACE_MODELS = (
    "gobysend.subscription",
    "gobysend.event",
    "gobysend.device",
    "gobysend.attribute",
    "gobysend.attribute.value",
    "gobysend.consent.log",
)


class JsonRpc:
    """The web client's way in: a session cookie, then /web/dataset/call_kw."""

    _ids = itertools.count(1)

    def __init__(self, base_url, database, login, password):
        self.base_url = base_url
        self.session = requests.Session()
        result = self._post("/web/session/authenticate", {"db": database, "login": login, "password": password})
        self.uid = result["uid"]

    def _post(self, path, params):
        response = self.session.post(
            self.base_url + path,
            json={"jsonrpc": "2.0", "method": "call", "id": next(self._ids), "params": params},
            timeout=30,
        )
        response.raise_for_status()
        body = response.json()
        if "error" in body:
            raise PermissionError(body["error"]["data"]["name"], body["error"]["data"]["message"])
        return body["result"]

    def call(self, model, method, *args, **kwargs):
        return self._post(
            f"/web/dataset/call_kw/{model}/{method}",
            {"model": model, "method": method, "args": list(args), "kwargs": kwargs},
        )


@pytest.fixture(scope="module")
def shops(admin, make_workspace):
    """Two workspaces filled through the tracking API, and a restricted member of each."""
    suffix = uuid.uuid4().hex[:8]
    user_group = admin.xmlid("gobysend_automation.group_gobysend_user")
    shops = {}
    for shop, contacts in (("a", ("A-1", "A-2")), ("b", ("B-1",))):
        workspace_id, api = make_workspace(name=f"Isolation {shop.upper()} {suffix}")
        batch = []
        for external_id in contacts:
            batch += [
                {
                    "type": "identify",
                    "id": external_id,
                    "email": f"{external_id.lower()}-{suffix}@example.com",
                    "attributes": {"tier": shop},
                },
                {"type": "track", "id": external_id, "name": "order_completed", "message_id": f"{external_id}-order"},
                {
                    "type": "page",
                    "id": external_id,
                    "url": f"https://{shop}.example.com",
                    "message_id": f"{external_id}-page",
                },
                {"type": "device", "id": external_id, "token": f"{external_id}-{suffix}", "platform": "web"},
            ]
        response = api.post("/batch", {"batch": batch})
        assert response.status_code == 200 and response.json()["rejected"] == 0, response.text
        assert api.post("/unsubscribe", {"id": contacts[0], "channel": "sms"}).status_code == 200
        login = f"e2e_iso_{shop}_{suffix}"
        user_id = admin.call(
            "res.users",
            "create",
            {
                "name": f"Member {shop.upper()}",
                "login": login,
                "password": f"pw-{login}",
                "groups_id": [(6, 0, [user_group])],
            },
        )
        admin.call("gobysend.workspace", "write", [workspace_id], {"member_ids": [(4, user_id)]})
        shops[shop] = {
            "workspace_id": workspace_id,
            "login": login,
            "password": f"pw-{login}",
            "contacts": set(contacts),
            "message_ids": {f"{c}-{kind}" for c in contacts for kind in ("order", "page")},
        }
    return shops


@pytest.fixture(scope="module", params=["xmlrpc", "jsonrpc"])
def clients(request, shops, make_rpc, odoo_server):
    """Per shop, a client of its restricted member over the protocol under test."""
    if request.param == "xmlrpc":
        return {shop: make_rpc(data["login"], data["password"]) for shop, data in shops.items()}
    return {
        shop: JsonRpc(odoo_server.base_url, odoo_server.database, data["login"], data["password"])
        for shop, data in shops.items()
    }


def other(shop):
    return "b" if shop == "a" else "a"


@pytest.mark.parametrize("shop", ["a", "b"])
def test_member_sees_only_their_workspace(shops, clients, shop):
    client, mine = clients[shop], shops[shop]
    workspaces = client.call("gobysend.workspace", "search_read", [], fields=["name"])
    assert [workspace["id"] for workspace in workspaces] == [mine["workspace_id"]]

    subscriptions = client.call(
        "gobysend.subscription", "search_read", [], fields=["external_id", "workspace_id", "sms_state"]
    )
    assert {s["external_id"] for s in subscriptions} == mine["contacts"]
    assert sorted(s["sms_state"] for s in subscriptions).count("unsubscribed") == 1

    events = client.call("gobysend.event", "search_read", [], fields=["message_id", "workspace_id"])
    assert {event["message_id"] for event in events} == mine["message_ids"]

    for model in WORKSPACE_MODELS:
        records = client.call(model, "search_read", [], fields=["workspace_id"])
        assert records, model
        assert {record["workspace_id"][0] for record in records} == {mine["workspace_id"]}, model
        # Asking for the other workspace explicitly finds nothing either.
        assert client.call(model, "search_count", [("workspace_id", "=", shops[other(shop)]["workspace_id"])]) == 0, (
            model
        )


def test_admin_sees_both_workspaces(admin, shops):
    for data in shops.values():
        events = admin.call(
            "gobysend.event", "search_read", [("workspace_id", "=", data["workspace_id"])], fields=["message_id"]
        )
        assert {event["message_id"] for event in events} == data["message_ids"]


@pytest.mark.parametrize("shop", ["a", "b"])
def test_member_cannot_reach_the_other_workspace_by_id(admin, shops, clients, shop):
    client, theirs = clients[shop], shops[other(shop)]
    (subscription_id,) = admin.call(
        "gobysend.subscription",
        "search",
        [("workspace_id", "=", theirs["workspace_id"]), ("external_id", "!=", False)],
        limit=1,
    )
    event_id = admin.call("gobysend.event", "search", [("workspace_id", "=", theirs["workspace_id"])], limit=1)[0]
    denied = (xmlrpc.client.Fault, PermissionError)
    with pytest.raises(denied):
        client.call("gobysend.event", "read", [event_id], ["name"])
    with pytest.raises(denied):
        client.call("gobysend.subscription", "read", [subscription_id], ["external_id"])
    with pytest.raises(denied):
        client.call("gobysend.subscription", "write", [subscription_id], {"external_id": "hijacked"})
    with pytest.raises(denied):
        client.call("gobysend.workspace", "read", [theirs["workspace_id"]], ["name"])
    # API keys are for managers only, even of one's own workspace.
    with pytest.raises(denied):
        client.call("gobysend.api.key", "search_read", [], fields=["name"])
    (unchanged,) = admin.call("gobysend.subscription", "read", [subscription_id], ["external_id"])
    assert unchanged["external_id"] in theirs["contacts"]
