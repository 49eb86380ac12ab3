"""In-app messages end to end: a manager sends one to a contact from Odoo, the business's app
fetches it over the tracking API and reports what the contact did with it."""


def send_inapp(admin, workspace_id, contact_id, subject, body):
    """Send an in-app message as a manager does, through the send wizard; return its id."""
    channel_id = admin.call(
        "gobysend.channel",
        "create",
        {"name": "App banners", "workspace_id": workspace_id, "channel_type": "inapp", "state": "enabled"},
    )
    wizard_id = admin.call(
        "gobysend.send.message.wizard",
        "create",
        {"partner_ids": [(6, 0, [contact_id])], "channel_id": channel_id, "subject": subject, "body": body},
    )
    action = admin.call("gobysend.send.message.wizard", "action_send", [wizard_id])
    (message_id,) = admin.call("gobysend.message", "search", action["domain"])
    return message_id


def message_of(admin, message_id):
    (message,) = admin.call(
        "gobysend.message", "read", [message_id], ["state", "token_cost", "inapp_dismissed_at", "reason"]
    )
    return message


def test_the_app_fetches_an_inapp_message_and_reports_engagement(admin, make_workspace):
    # A new workspace has no tokens: an SMS would be held, an in-app message is free.
    workspace_id, api = make_workspace()
    response = api.post("/identify", {"id": "C-1", "email": "lan@example.com", "attributes": {"name": "Nguyễn Lan"}})
    assert response.status_code == 200, response.text
    contact_id = response.json()["contact_id"]

    message_id = send_inapp(admin, workspace_id, contact_id, "Flash sale", "Hello {{ contact.name }}")
    assert message_of(admin, message_id)["state"] == "delivered", message_of(admin, message_id)["reason"]

    response = api.request("GET", "/inapp", params={"email": "lan@example.com"})
    assert response.status_code == 200, response.text
    (listed,) = response.json()["messages"]
    assert (listed["id"], listed["subject"], listed["body"], listed["kind"]) == (
        message_id,
        "Flash sale",
        "Hello Nguyễn Lan",
        "banner",
    )

    for action, state in (("seen", "opened"), ("seen", "opened"), ("clicked", "clicked")):
        response = api.post(f"/inapp/{message_id}/{action}")
        assert response.status_code == 200, response.text
        assert response.json()["state"] == state
        assert message_of(admin, message_id)["state"] == state

    # Another workspace's key neither sees the message nor changes it.
    _other_id, other_api = make_workspace()
    assert other_api.post(f"/inapp/{message_id}/dismissed").status_code == 404
    assert other_api.request("GET", "/inapp", params={"id": "C-1"}).status_code == 404
    assert not message_of(admin, message_id)["inapp_dismissed_at"]

    assert api.post(f"/inapp/{message_id}/dismissed").status_code == 200
    assert api.request("GET", "/inapp", params={"id": "C-1"}).json()["messages"] == []
    assert message_of(admin, message_id)["inapp_dismissed_at"]

    (workspace,) = admin.call("gobysend.workspace", "read", [workspace_id], ["token_balance"])
    assert workspace["token_balance"] == 0
    assert message_of(admin, message_id)["token_cost"] == 0
    assert not admin.call("gobysend.token.transaction", "search", [("message_id", "=", message_id)])
    events = admin.call(
        "gobysend.event", "search_read", [("workspace_id", "=", workspace_id)], fields=["name"], order="id"
    )
    assert [event["name"] for event in events if event["name"].startswith("message_")] == [
        "message_opened",
        "message_clicked",
        "message_dismissed",
    ]
