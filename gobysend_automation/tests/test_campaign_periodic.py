import datetime

from freezegun import freeze_time

from odoo.exceptions import UserError, ValidationError
from odoo.tests import tagged

from ..kinds import TRIGGERS
from .test_campaign import CampaignCase

# Saturday 27 March 2027, 11:00 in Berlin (UTC+1); the clocks go forward to UTC+2 that night.
BEFORE_SPRING_FORWARD_UTC = datetime.datetime(2027, 3, 27, 10, 0)


def utc(*args):
    return datetime.datetime(*args)


@tagged("time_sensitive")
class PeriodicCase(CampaignCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.workspace_a.write({"tz": "Europe/Berlin"})
        cls.kind = TRIGGERS["periodic"]
        # The contact's own birthday (the tracking API's standard key "birthday"), and a date
        # attribute of the workspace.
        cls.date_field = cls.env["ir.model.fields"]._get("res.partner", "gobysend_birthday")
        cls.birthday = cls.env["gobysend.attribute"].create(
            {"workspace_id": cls.workspace_a.id, "key": "wedding_day", "value_type": "date"}
        )

    def periodic(self, **values):
        defaults = {"trigger_kind": "periodic", "period": "daily", "run_time": 9.0, "reentry": "every_time"}
        defaults.update(values)
        return self.campaign(**defaults)

    def set_birthdays(self, dates, attribute=None):
        """{contact index: date} as the contacts' birthday attribute."""
        self.env["gobysend.attribute.value"].create(
            [
                {
                    "attribute_id": (attribute or self.birthday).id,
                    "partner_id": self.contacts[index].id,
                    "value_date" if not attribute or attribute.value_type == "date" else "value_datetime": value,
                }
                for index, value in dates.items()
            ]
        )

    def launch(self, campaign):
        # A periodic campaign starts no fan-out: its runs put contacts into journeys.
        campaign.action_launch()
        self.assertEqual(campaign.state, "running")
        self.assertFalse(campaign.fan_out_running)
        return campaign

    def assertRefused(self, pattern, func, *args, **kwargs):
        # assertRaises (not ...Regex): Odoo rolls the refused write back to a savepoint.
        with self.assertRaises(ValidationError) as caught:
            func(*args, **kwargs)
        self.assertRegex(str(caught.exception), pattern)

    def run_partners(self, campaign, now):
        ids = campaign._run_periodic(now)
        # The journeys were inserted in SQL.
        self.env.invalidate_all()
        return self.env["gobysend.journey"].browse(ids).partner_id


class TestPeriodicSchedule(PeriodicCase):
    @freeze_time(BEFORE_SPRING_FORWARD_UTC)
    def test_launch_creates_the_cron_at_the_next_local_time(self):
        campaign = self.launch(self.periodic())
        cron = campaign.cron_id
        self.assertTrue(cron.active)
        self.assertEqual(cron.code, f"model.browse({campaign.id})._run_periodic()")
        self.assertEqual(cron.model_id.model, "gobysend.campaign")
        # 09:00 in Berlin on Sunday is 07:00 UTC: the clocks went forward overnight.
        self.assertEqual(cron.nextcall, utc(2027, 3, 28, 7, 0))
        self.assertFalse(campaign.journey_ids, "the first run is at 09:00, not at launch")
        # Changing the schedule of a running campaign moves its next call.
        campaign.write({"period": "weekly", "run_weekday": "2", "run_time": 18.5})
        self.assertEqual(cron.nextcall, utc(2027, 3, 31, 16, 30))
        self.assertEqual(len(self.env["ir.cron"].search([("code", "=", cron.code)])), 1)

    def test_next_run_of_each_period_in_the_workspace_time_zone(self):
        campaign = self.periodic()
        cases = [
            # (values, after (UTC), expected next run (UTC))
            ({"period": "daily"}, utc(2027, 3, 27, 7, 59), utc(2027, 3, 27, 8, 0)),
            ({"period": "daily"}, utc(2027, 3, 27, 8, 0), utc(2027, 3, 28, 7, 0)),
            ({"period": "daily"}, utc(2027, 10, 30, 9, 0), utc(2027, 10, 31, 8, 0)),
            ({"period": "weekly", "run_weekday": "0"}, utc(2027, 3, 27, 10, 0), utc(2027, 3, 29, 7, 0)),
            ({"period": "monthly", "run_monthday": 31}, utc(2027, 1, 31, 9, 0), utc(2027, 2, 28, 8, 0)),
            ({"period": "monthly", "run_monthday": 31}, utc(2027, 2, 28, 9, 0), utc(2027, 3, 31, 7, 0)),
            ({"period": "monthly", "run_monthday": 1}, utc(2027, 11, 30, 23, 30), utc(2027, 12, 1, 8, 0)),
            ({"period": "yearly", "run_month": 2, "run_monthday": 29}, utc(2027, 3, 1), utc(2028, 2, 29, 8, 0)),
            ({"period": "yearly", "run_month": 2, "run_monthday": 29}, utc(2028, 3, 1), utc(2029, 2, 28, 8, 0)),
            # 02:30 does not exist in Berlin on 28 March 2027: the run is at the jump, 03:00 CEST.
            ({"period": "daily", "run_time": 2.5}, utc(2027, 3, 27, 12, 0), utc(2027, 3, 28, 1, 0)),
        ]
        for values, after, expected in cases:
            with self.subTest(values=values, after=after):
                campaign.write(dict({"run_time": 9.0}, **values))
                self.assertEqual(self.kind.next_run(campaign, after), expected)

    def test_the_scheduler_keeps_the_local_time_across_daylight_saving(self):
        with freeze_time(utc(2027, 3, 26, 10, 0)):
            campaign = self.launch(self.periodic())
        cron = campaign.cron_id
        self.assertEqual(cron.nextcall, utc(2027, 3, 27, 8, 0))
        self.env.flush_all()
        # The scheduler runs the job at 09:00 in Berlin on Saturday, then moves its next call:
        # Sunday 09:00 is 07:00 UTC once the clocks went forward (a day later in UTC would be 10:00).
        with freeze_time(utc(2027, 3, 27, 8, 0, 5)):
            self.env.cr.execute("SELECT * FROM ir_cron WHERE id = %s", [cron.id])
            self.env["ir.cron"]._reschedule_later(self.env.cr.dictfetchone())
        self.env.invalidate_all()
        self.assertEqual(cron.nextcall, utc(2027, 3, 28, 7, 0))

    def test_a_periodic_rule_without_a_time_or_period_is_refused(self):
        self.assertRefused("needs a time of day", self.periodic, run_time=False)
        self.assertRefused("needs a period", self.periodic, period=False)
        campaign = self.periodic()
        self.assertRefused("“At”", campaign.write, {"run_time": 24.5})
        self.assertRefused("“At”", campaign.write, {"run_time": False})
        self.assertRefused("Day of Month", campaign.write, {"period": "monthly", "run_monthday": 0})
        self.assertRefused(
            "run it monthly", campaign.write, {"date_source": "birthday_month", "date_attribute_id": self.birthday.id}
        )
        self.assertRefused("Date Attribute", campaign.write, {"date_source": "attribute"})
        self.assertEqual((campaign.period, campaign.run_time, campaign.date_source), ("daily", 9.0, "none"))

    def test_a_date_attribute_of_another_workspace_or_type_is_refused(self):
        other = self.env["gobysend.attribute"].create(
            {"workspace_id": self.workspace_b.id, "key": "wedding_day", "value_type": "date"}
        )
        text = self.env["gobysend.attribute"].create(
            {"workspace_id": self.workspace_a.id, "key": "nickname", "value_type": "string"}
        )
        for attribute in (other, text):
            with self.subTest(attribute=attribute.key):
                self.assertRefused(
                    "Date Attribute", self.periodic, date_source="attribute", date_attribute_id=attribute.id
                )

    def test_the_cron_follows_pause_cancel_archive_and_deletion(self):
        campaign = self.launch(self.periodic())
        cron = campaign.cron_id
        campaign.action_pause()
        self.assertFalse(cron.active)
        campaign.action_resume()
        self.assertTrue(cron.active)
        campaign.active = False
        self.assertFalse(cron.active)
        campaign.active = True
        self.assertTrue(cron.active)
        campaign.action_cancel()
        self.assertFalse(cron.active)
        action = cron.ir_actions_server_id
        campaign.unlink()
        self.assertFalse(cron.exists())
        self.assertFalse(action.exists())


@freeze_time(utc(2027, 6, 7, 7, 0))
class TestPeriodicRuns(PeriodicCase):
    def test_each_run_starts_journeys_and_a_second_execution_none(self):
        campaign = self.launch(self.periodic())
        monday = utc(2027, 6, 7, 7, 0)
        self.assertEqual(self.run_partners(campaign, monday), self.contacts)
        self.assertEqual(campaign.last_run_at, monday)
        # The same run executed again (a retried job): nothing doubles.
        self.assertFalse(campaign._run_periodic(monday + datetime.timedelta(minutes=5)))
        self.assertEqual(len(campaign.journey_ids), 5)
        # The next day's run: a journey each again ("every time").
        self.assertEqual(self.run_partners(campaign, monday + datetime.timedelta(days=1)), self.contacts)
        self.assertEqual(len(campaign.journey_ids), 10)
        self.assertEqual(campaign.journey_ids[0].trigger_context, {"data": {"run_date": "2027-06-08"}})
        # The engine sends: the run queued nothing itself.
        self.assertFalse(self.env["gobysend.message"].search([("campaign_id", "=", campaign.id)]))
        self.advance(monday + datetime.timedelta(days=1))
        self.assertEqual(self.env["gobysend.message"].search_count([("campaign_id", "=", campaign.id)]), 10)

    def test_the_scheduled_action_runs_the_campaign(self):
        campaign = self.launch(self.periodic())
        # What the scheduler does at the cron's time (the class freezes the clock at Monday 09:00 in Berlin).
        campaign.cron_id.method_direct_trigger()
        self.env.invalidate_all()
        self.assertEqual(campaign.journey_ids.partner_id, self.contacts)
        self.assertEqual(campaign.last_run_at, utc(2027, 6, 7, 7, 0))
        self.assertEqual(campaign.journey_ids[0].trigger_context, {"data": {"run_date": "2027-06-07"}})

    def test_the_audience_is_evaluated_at_each_run(self):
        tag = self.env["res.partner.category"].create({"name": "VIP"})
        self.contacts[:2].category_id = tag
        campaign = self.launch(self.periodic(tag_ids=[(6, 0, tag.ids)]))
        self.assertEqual(self.run_partners(campaign, utc(2027, 6, 7, 7, 0)), self.contacts[:2])
        self.contacts[2].category_id = tag
        self.contacts[0].category_id = False
        self.assertEqual(self.run_partners(campaign, utc(2027, 6, 8, 7, 0)), self.contacts[1:3])

    def test_a_run_started_late_serves_its_own_day(self):
        self.contacts[0].gobysend_birthday = "1990-06-07"
        self.contacts[1].gobysend_birthday = "1990-06-08"
        campaign = self.launch(self.periodic(run_time=23.5, date_source="field", date_field_id=self.date_field.id))
        # The run of 7 June, 23:30 in Berlin, started at 00:10 on 8 June: 7 June's birthdays.
        self.assertEqual(self.run_partners(campaign, utc(2027, 6, 7, 22, 10)), self.contacts[0])
        self.assertEqual(campaign.journey_ids.trigger_context, {"data": {"run_date": "2027-06-07"}})
        # Started again by hand in the afternoon: still that run, nothing new.
        self.assertFalse(campaign._run_periodic(utc(2027, 6, 8, 13, 0)))
        # The run of 8 June.
        self.assertEqual(self.run_partners(campaign, utc(2027, 6, 8, 21, 30)), self.contacts[1])

    def test_the_estimate_and_the_launch_count_the_next_run(self):
        self.workspace_a.sudo().token_balance = 5
        self.contacts[0].gobysend_birthday = "1990-06-08"
        # The clock reads Monday 7 June, 09:00 in Berlin: the next run is on 8 June.
        campaign = self.periodic(date_source="field", date_field_id=self.date_field.id)
        self.assertEqual((campaign.audience_count, campaign.token_estimate), (1, 2))
        self.launch(campaign)
        everyone = self.periodic()
        self.assertEqual(everyone.audience_count, 5)
        with self.assertRaisesRegex(UserError, "about 10.00 tokens"):
            everyone.action_launch()
        # Settings still being filled in on the form: the estimate says what is missing.
        draft = self.env["gobysend.campaign"].new(
            {"name": "Draft", "workspace_id": self.workspace_a.id, "trigger_kind": "periodic", "date_source": "field"}
        )
        self.assertIn("Date Field", draft.estimate_error)

    def test_the_contact_filter_is_read_on_the_day_of_the_run(self):
        self.contacts[0].gobysend_birthday = "2009-06-08"
        self.contacts[1].gobysend_birthday = "2009-06-09"
        adults = "[('gobysend_birthday', '<=', (context_today() - relativedelta(years=18)).strftime('%Y-%m-%d'))]"
        campaign = self.launch(self.periodic(partner_domain=adults))
        # The clock reads 7 June; the run is the one of 8 June, when contact 0 turns 18.
        self.assertEqual(self.run_partners(campaign, utc(2027, 6, 8, 7, 0)), self.contacts[0])

    def test_a_paused_campaign_does_not_run(self):
        campaign = self.launch(self.periodic())
        campaign.action_pause()
        self.assertFalse(campaign._run_periodic(utc(2027, 6, 7, 7, 0)))
        self.assertFalse(campaign.last_run_at)

    def test_birthdays_of_this_month(self):
        self.set_birthdays(
            {0: "1990-12-01", 1: "1985-12-31", 2: "1990-11-30", 3: "2001-01-01"}  # contact 4: none
        )
        campaign = self.launch(
            self.periodic(
                period="monthly", run_monthday=1, date_source="birthday_month", date_attribute_id=self.birthday.id
            )
        )
        # 1 December 2027, 09:00 in Berlin.
        self.assertEqual(self.run_partners(campaign, utc(2027, 12, 1, 8, 0)), self.contacts[:2])

    def test_birthdays_of_this_month_from_the_contacts_birthday(self):
        self.contacts[0].gobysend_birthday = "1990-07-14"
        self.contacts[1].gobysend_birthday = "1990-08-01"
        # No date chosen: the contact's own birthday.
        campaign = self.launch(self.periodic(period="monthly", run_monthday=1, date_source="birthday_month"))
        self.assertEqual(self.run_partners(campaign, utc(2027, 7, 1, 7, 0)), self.contacts[0])
        campaign.action_cancel()
        # Any stored date or date-and-time field of contacts; a date and time is read in the
        # workspace's time zone (30 June 22:30 UTC is 1 July in Berlin).
        other_field = self.env["ir.model.fields"]._get("res.partner", "calendar_last_notif_ack")
        self.contacts[2].calendar_last_notif_ack = "2020-06-30 22:30:00"
        self.contacts[3].calendar_last_notif_ack = "2020-07-31 22:30:00"
        campaign = self.launch(
            self.periodic(period="monthly", run_monthday=1, date_source="birthday_month", date_field_id=other_field.id)
        )
        self.assertEqual(self.run_partners(campaign, utc(2027, 7, 1, 7, 0)), self.contacts[2])

    def test_exact_date_with_an_offset_either_way(self):
        self.contacts[0].gobysend_birthday = "1990-06-10"
        self.contacts[1].gobysend_birthday = "2020-06-11"
        self.contacts[2].gobysend_birthday = "1990-06-07"
        before = self.launch(self.periodic(date_source="field", date_field_id=self.date_field.id, date_offset_days=-3))
        # Three days before 10 June: 7 June.
        self.assertEqual(self.run_partners(before, utc(2027, 6, 7, 7, 0)), self.contacts[0])
        after = self.launch(self.periodic(date_source="field", date_field_id=self.date_field.id, date_offset_days=2))
        # Two days after 10 June: 12 June; and the exact day with no offset.
        self.assertEqual(self.run_partners(after, utc(2027, 6, 12, 7, 0)), self.contacts[0])
        same_day = self.launch(self.periodic(date_source="field", date_field_id=self.date_field.id))
        self.assertEqual(self.run_partners(same_day, utc(2027, 6, 7, 7, 0)), self.contacts[2])

    def test_an_offset_across_the_new_year(self):
        self.set_birthdays({0: "1990-01-02"})
        campaign = self.launch(
            self.periodic(date_source="attribute", date_attribute_id=self.birthday.id, date_offset_days=-5)
        )
        self.assertEqual(self.run_partners(campaign, utc(2027, 12, 28, 8, 0)), self.contacts[0])

    def test_29_february_counts_on_28_february_without_a_leap_day(self):
        self.set_birthdays({0: "2000-02-29", 1: "1999-02-28", 2: "1999-03-01"})
        campaign = self.launch(self.periodic(date_source="attribute", date_attribute_id=self.birthday.id))
        self.assertEqual(self.run_partners(campaign, utc(2027, 2, 28, 8, 0)), self.contacts[:2])
        self.assertEqual(self.run_partners(campaign, utc(2028, 2, 28, 8, 0)), self.contacts[1])
        self.assertEqual(self.run_partners(campaign, utc(2028, 2, 29, 8, 0)), self.contacts[0])
        self.assertEqual(self.run_partners(campaign, utc(2027, 3, 1, 8, 0)), self.contacts[2])

    def test_dates_and_times_are_read_in_the_workspace_time_zone(self):
        moment = self.env["gobysend.attribute"].create(
            {"workspace_id": self.workspace_a.id, "key": "signed_up_at", "value_type": "datetime"}
        )
        # 23:30 UTC on 9 June is already 10 June in Berlin.
        self.set_birthdays({0: "2020-06-09 23:30:00", 1: "2020-06-10 12:00:00"}, attribute=moment)
        campaign = self.launch(self.periodic(date_source="attribute", date_attribute_id=moment.id))
        self.assertEqual(self.run_partners(campaign, utc(2027, 6, 10, 7, 0)), self.contacts[:2])
        self.assertFalse(self.run_partners(campaign, utc(2027, 6, 9, 7, 0)))

    def test_only_the_audience_of_the_workspace_is_reached(self):
        stranger = self.env["res.partner"].create({"name": "Elsewhere", "gobysend_birthday": "1990-06-10"})
        self.env["gobysend.subscription"].create({"workspace_id": self.workspace_b.id, "partner_id": stranger.id})
        self.contacts[0].gobysend_birthday = "1990-06-10"
        campaign = self.launch(self.periodic(date_source="field", date_field_id=self.date_field.id))
        self.assertEqual(self.run_partners(campaign, utc(2027, 6, 10, 7, 0)), self.contacts[0])
