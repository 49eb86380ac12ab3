/** @odoo-module **/

import { registry } from "@web/core/registry";

/**
 * A manager opens the campaigns (a kanban column per state, empty ones too), reads a campaign's
 * rates on its statistics page, then its messages over time and its recipients by channel.
 */
registry.category("web_tour.tours").add("gobysend_campaign_statistics_tour", {
    url: "/odoo/action-gobysend_automation.gobysend_campaign_action",
    steps: () => [
        {
            content: "The running campaign is in its column",
            trigger: ".o_kanban_group:has(.o_column_title:contains('Running')) .o_kanban_record:contains('Spring stats')",
        },
        {
            content: "Columns of states without campaigns show too",
            trigger: ".o_kanban_group .o_column_title:contains('Paused')",
        },
        {
            trigger: ".o_kanban_group .o_column_title:contains('Cancelled')",
        },
        {
            content: "Open the campaign",
            trigger: ".o_kanban_record:contains('Spring stats')",
            run: "click",
        },
        {
            content: "Open its statistics",
            trigger: ".o_notebook_headers a[name=statistics]",
            run: "click",
        },
        {
            content: "The open rate: 2 of 4 messages reached",
            trigger: ".o_field_widget[name=open_rate]:contains('50')",
        },
        {
            content: "The click rate",
            trigger: ".o_field_widget[name=click_rate]:contains('25')",
        },
        {
            content: "The messages over time",
            trigger: "button[name=action_view_statistics]",
            run: "click",
        },
        {
            content: "A graph of the messages by day",
            trigger: ".o_graph_view .o_graph_renderer canvas",
        },
        {
            content: "Switch to the recipients",
            trigger: ".o_control_panel .o_switch_view.o_list",
            run: "click",
        },
        {
            trigger: ".o_list_view .o_data_row",
        },
        {
            content: "Open the filters",
            trigger: ".o_searchview_dropdown_toggler",
            run: "click",
        },
        {
            content: "Only email messages",
            trigger: ".o_filter_menu .dropdown-item:contains('Email')",
            run: "click",
        },
        {
            content: "None went by email",
            trigger: ".o_list_view:not(:has(.o_data_row))",
        },
        {
            content: "Only SMS messages instead",
            trigger: ".o_filter_menu .dropdown-item:contains('SMS')",
            run: "click",
        },
        {
            content: "Email or SMS: the campaign's five recipients",
            trigger: ".o_list_view:has(.o_data_row:eq(4)):not(:has(.o_data_row:eq(5)))",
        },
        {
            content: "Grouped by step",
            trigger: ".o_group_by_menu .dropdown-item:contains('Step')",
            run: "click",
        },
        {
            trigger: ".o_list_view .o_group_header:contains('Send a message')",
        },
    ],
});
