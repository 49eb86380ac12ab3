/** @odoo-module **/

import { registry } from "@web/core/registry";

/**
 * From Gobysend › Configuration › Channels, a manager configures an email channel in test mode, presses "Send Test" and reads the test
 * message in the outbox; then opens the outbox and finds it there.
 */
registry.category("web_tour.tours").add("gobysend_channel_send_test_tour", {
    url: "/odoo/action-gobysend_automation.gobysend_channel_action",
    steps: () => [
        {
            content: "Create a channel",
            trigger: ".o_list_button_add",
            run: "click",
        },
        {
            content: "Name it",
            trigger: ".o_form_view .o_field_widget[name=name] input",
            run: "edit Tour newsletter",
        },
        {
            content: "Pick its workspace",
            trigger: ".o_field_widget[name=workspace_id] input",
            run: "edit Shop UI",
        },
        {
            trigger: ".o-autocomplete--dropdown-item > a:contains('Shop UI')",
            run: "click",
        },
        {
            content: "It sends email",
            trigger: ".o_field_widget[name=channel_type] select",
            run: "selectByLabel Email",
        },
        {
            content: "The test recipient is the contact prepared by the test",
            trigger: ".o_field_widget[name=test_partner_id] input",
            run: "edit Lan Tour",
        },
        {
            trigger: ".o-autocomplete--dropdown-item > a:contains('Lan Tour')",
            run: "click",
        },
        {
            content: "A new channel starts in test mode",
            trigger: ".o_statusbar_status button.o_arrow_button_current:contains('Test')",
        },
        {
            content: "Send a test: the channel is saved first",
            trigger: "button[name=action_send_test]",
            run: "click",
        },
        {
            content: "The test message went out through the embedded outbox",
            trigger: ".o_form_view .o_statusbar_status button.o_arrow_button_current:contains('Sent')",
        },
        {
            content: "Its rendering is shown",
            trigger: ".o_field_widget[name=body]:contains('This is a test message from Shop UI')",
        },
        {
            content: "Open the outbox",
            trigger: ".o_menu_sections a:contains('Outbox'), .o_menu_sections button:contains('Outbox')",
            run: "click",
        },
        {
            content: "The test message is in the outbox, sent",
            trigger: ".o_kanban_record:contains('Lan Tour'):contains('Sent'), .o_data_row:contains('Lan Tour'):contains('Sent')",
        },
    ],
});
