"""The incremental update and the full rebuild always agree, over random data and conditions."""

import datetime

from freezegun import freeze_time
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from .test_segment import NOW, SegmentCase

CITIES = ("Hà Nội", "Huế", "Đà Nẵng")
EVENTS = ("order_completed", "app_opened")

event_strategy = st.tuples(st.sampled_from(EVENTS), st.integers(0, 60), st.integers(0, 1000))
contact_strategy = st.fixed_dictionaries(
    {
        "city": st.sampled_from(CITIES),
        "points": st.none() | st.integers(0, 100),
        "events": st.lists(event_strategy, max_size=4),
    }
)
leaf_strategy = st.one_of(
    st.fixed_dictionaries(
        {
            "kind": st.just("domain"),
            "partner_domain": st.sampled_from(CITIES).map(lambda city: repr([("city", "=", city)])),
            "negate": st.booleans(),
        }
    ),
    st.fixed_dictionaries(
        {
            "kind": st.just("attribute"),
            "attribute_operator": st.sampled_from(["gt", "lt", "set", "not_set"]),
            "value": st.integers(0, 100).map(str),
        }
    ),
    st.fixed_dictionaries(
        {
            "kind": st.just("event"),
            "event_name": st.sampled_from(EVENTS),
            "count_operator": st.sampled_from(["at_least", "at_most", "exactly"]),
            "count": st.integers(0, 3),
            "days": st.sampled_from([0, 7, 30]),
            "property_key": st.sampled_from([False, "total"]),
            "property_operator": st.sampled_from([">", "<="]),
            "property_value": st.integers(0, 1000).map(str),
        }
    ),
    st.fixed_dictionaries(
        {
            "kind": st.just("consent"),
            "consent_channel": st.sampled_from([False, "sms"]),
            "consent_state": st.sampled_from(["subscribed", "unsubscribed"]),
        }
    ),
)
group_strategy = st.fixed_dictionaries(
    {
        "kind": st.just("group"),
        "group_operator": st.sampled_from(["and", "or"]),
        "children": st.lists(leaf_strategy, min_size=1, max_size=3),
        "negate": st.booleans(),
    }
)
segment_strategy = st.fixed_dictionaries(
    {"match": st.sampled_from(["and", "or"]), "conditions": st.lists(leaf_strategy | group_strategy, max_size=3)}
)
change_strategy = st.one_of(
    st.tuples(st.just("event"), event_strategy),
    st.tuples(st.just("city"), st.sampled_from(CITIES)),
    st.tuples(st.just("points"), st.none() | st.integers(0, 100)),
    st.tuples(st.just("consent"), st.sampled_from(["subscribed", "unsubscribed"])),
    st.tuples(st.just("archive"), st.booleans()),
)


@freeze_time(NOW)
class TestIncrementalAgreesWithFullRebuild(SegmentCase):
    def condition_values(self, condition, workspace, attribute):
        values = {key: value for key, value in condition.items() if key != "children"}
        if values["kind"] == "attribute":
            values["attribute_id"] = attribute.id
        if values["kind"] == "group":
            values["child_ids"] = [
                (0, 0, self.condition_values(child, workspace, attribute)) for child in condition["children"]
            ]
        return values

    def apply_change(self, workspace, attribute, partner, change):
        kind, value = change
        subscription = self.subscription_of(workspace, partner)
        if kind == "event":
            name, days_ago, total = value
            self.track(
                partner, name, NOW - datetime.timedelta(days=days_ago), workspace=workspace, properties={"total": total}
            )
        elif kind == "city":
            partner.city = value
        elif kind == "points":
            current = self.env["gobysend.attribute.value"].search(
                [("partner_id", "=", partner.id), ("attribute_id", "=", attribute.id)]
            )
            if value is None:
                current.unlink()
            elif current:
                current.value_number = value
            else:
                self.env["gobysend.attribute.value"].create(
                    {"attribute_id": attribute.id, "partner_id": partner.id, "value_number": value}
                )
        elif kind == "consent":
            subscription._set_consent("sms", value, "manual")
        else:
            subscription.active = not value

    @settings(
        max_examples=40,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @seed(20261123)
    @given(
        contacts=st.lists(contact_strategy, min_size=1, max_size=6),
        segment=segment_strategy,
        changes=st.lists(st.tuples(st.integers(0, 5), change_strategy), min_size=1, max_size=10),
    )
    def test_incremental_update_agrees_with_full_rebuild(self, contacts, segment, changes):
        workspace = self.env["gobysend.workspace"].create({"name": "Random"})
        attribute = self.env["gobysend.attribute"].create(
            {"workspace_id": workspace.id, "key": "points", "value_type": "number"}
        )
        partners = []
        for number, contact in enumerate(contacts):
            partner = self.contact(f"Contact {number}", workspace=workspace, city=contact["city"])
            if contact["points"] is not None:
                self.env["gobysend.attribute.value"].create(
                    {"attribute_id": attribute.id, "partner_id": partner.id, "value_number": contact["points"]}
                )
            for name, days_ago, total in contact["events"]:
                self.track(
                    partner,
                    name,
                    NOW - datetime.timedelta(days=days_ago),
                    workspace=workspace,
                    properties={"total": total},
                )
            partners.append(partner)
        record = self.Segment.create(
            {
                "name": "Random audience",
                "workspace_id": workspace.id,
                "match": segment["match"],
                "condition_ids": [
                    (0, 0, self.condition_values(condition, workspace, attribute))
                    for condition in segment["conditions"]
                ],
            }
        )
        record._rebuild(now=NOW)
        self.Segment._process_dirty_contacts(now=NOW)
        for index, change in changes:
            self.apply_change(workspace, attribute, partners[index % len(partners)], change)
        while self.Segment._process_dirty_contacts(now=NOW):
            pass
        incremental = set(record.current_membership_ids.partner_id.ids)
        self.assertEqual(incremental, record._get_matching_partner_ids(now=NOW))
        # A full rebuild now finds nothing to change.
        self.assertEqual(record._apply_membership(now=NOW), (0, 0))
