/** @odoo-module **/

import { registry } from "@web/core/registry";

/**
 * A manager reads a campaign's statistics: its conversion rate, the figures of each step with
 * the converted journeys, and its follow-up campaigns.
 */
registry.category("web_tour.tours").add("gobysend_workflow_stats_tour", {
    steps: () => [
        {
            content: "Open the campaign's statistics",
            trigger: ".o_notebook_headers a[name=statistics]",
            run: "click",
        },
        {
            content: "One of the two journeys converted",
            trigger: ".o_field_widget[name=conversion_rate]:contains('50')",
        },
        {
            content: "The goal step's row counts the converted journey",
            trigger:
                ".o_field_widget[name=step_stat_ids] .o_data_row:contains('Paid') td[name=converted_count]:contains('1')",
        },
        {
            content: "The follow-up is listed with its trigger",
            trigger: ".o_field_widget[name=followup_ids] .o_data_row:contains('Clicked the offer')",
        },
    ],
});

/**
 * A sales user opens a contact's marketing profile and reads each journey as a timeline.
 */
registry.category("web_tour.tours").add("gobysend_journey_timeline_tour", {
    steps: () => [
        {
            content: "Open the marketing profile",
            trigger: ".o_notebook_headers a[name=gobysend_profile]",
            run: "click",
        },
        {
            content: "The journey's steps in order, the goal reached",
            trigger:
                ".o_field_widget[name=gobysend_journey_ids] .o_kanban_record:contains('Timeline stats'):contains('Reached the goal')",
        },
        {
            content: "The message each step sent, with its state",
            trigger: ".o_field_widget[name=gobysend_journey_ids] .o_kanban_record:contains('SMS message: Queued')",
        },
        {
            content: "Where the journey stands",
            trigger: ".o_field_widget[name=gobysend_journey_ids] .o_kanban_record:contains('Completed the workflow')",
        },
    ],
});
