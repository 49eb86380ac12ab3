/** @odoo-module **/

import { registry } from "@web/core/registry";
import { stepUtils } from "@web_tour/tour_service/tour_utils";

/**
 * An administrator creates a workspace, generates an API key (shown once), then reads the
 * marketing profile of a contact prepared by the test.
 */
registry.category("web_tour.tours").add("gobysend_workspace_and_profile_tour", {
    url: "/odoo",
    steps: () => [
        ...stepUtils.goToAppSteps("gobysend_automation.gobysend_menu_root", "Open the Gobysend app"),
        {
            content: "The workspaces of the database are listed",
            trigger: ".o_kanban_record:contains('Shop UI')",
        },
        {
            content: "Create a workspace",
            trigger: ".o-kanban-button-new",
            run: "click",
        },
        {
            content: "Name it",
            trigger: ".o_form_view .o_field_widget[name=name] input",
            run: "edit Tour Workspace",
        },
        {
            content: "Open the API Keys tab",
            trigger: ".o_notebook_headers a[name=api_keys]",
            run: "click",
        },
        {
            content: "No key yet",
            trigger: ".o_field_widget[name=api_key_ids]:not(:has(.o_data_row))",
        },
        {
            content: "Ask for a new key: the workspace is saved first",
            trigger: "button[name=action_open_api_key_wizard]",
            run: "click",
        },
        {
            content: "Name the key",
            trigger: ".modal .o_field_widget[name=name] input",
            run: "edit Online shop",
        },
        {
            content: "Generate it",
            trigger: ".modal button[name=action_generate]",
            run: "click",
        },
        {
            content: "The key is shown, with a warning that it is shown only once",
            trigger: ".modal .o_gobysend_api_key:contains('gbs_')",
        },
        {
            trigger: ".modal .alert-warning:contains('shown only once')",
        },
        {
            content: "The name field is gone and so is the Generate button",
            trigger: ".modal:not(:has(button[name=action_generate])):not(:has(.o_field_widget[name=name] input))",
        },
        {
            content: "Close the dialog",
            trigger: ".modal .modal-footer button:contains('Done')",
            run: "click",
        },
        {
            content: "The key is listed by name and prefix; its secret is not",
            trigger: ".o_field_widget[name=api_key_ids] .o_data_row:contains('Online shop'):contains('gbs_')",
        },
        {
            trigger: ".o_form_view .o_breadcrumb:contains('Tour Workspace')",
        },
        ...stepUtils.goToAppSteps("contacts.menu_contacts", "Open the Contacts app"),
        {
            content: "Look for the contact",
            trigger: ".o_searchview_input",
            run: "edit Lan Tour && press Enter",
        },
        {
            content: "Open the contact",
            trigger: ".o_kanban_record:contains('Lan Tour')",
            run: "click",
        },
        {
            content: "Smart button: one workspace",
            trigger: ".o_form_view button[name=action_gobysend_view_subscriptions]:contains('1'):contains('Workspaces')",
        },
        {
            content: "Smart button: two events",
            trigger: ".o_form_view button[name=action_gobysend_view_events]:contains('2'):contains('Activity')",
        },
        {
            content: "Smart button: one device",
            trigger: ".o_form_view button[name=action_gobysend_view_devices]:contains('1'):contains('Devices')",
        },
        {
            content: "Open the Marketing Profile tab",
            trigger: ".o_notebook_headers a[name=gobysend_profile]",
            run: "click",
        },
        {
            content: "The workspace and its consent per channel",
            trigger:
                ".o_field_widget[name=gobysend_subscription_ids] .o_data_row:contains('Shop UI'):contains('Unsubscribed'):contains('Subscribed'):contains('C-042')",
        },
        {
            content: "The attribute and its value",
            trigger: ".o_field_widget[name=gobysend_attribute_value_ids] .o_data_row:contains('Loyalty tier'):contains('Gold')",
        },
        {
            content: "The events",
            trigger: ".o_field_widget[name=gobysend_event_ids] .o_data_row:contains('order_completed')",
        },
        {
            trigger: ".o_field_widget[name=gobysend_event_ids] .o_data_row:contains('Pricing')",
        },
        {
            content: "The device",
            trigger: ".o_field_widget[name=gobysend_device_ids] .o_data_row:contains('tour-device-token')",
        },
        {
            content: "The activity smart button lists the contact's events",
            trigger: ".o_form_view button[name=action_gobysend_view_events]",
            run: "click",
        },
        {
            trigger: ".o_list_view .o_data_row:contains('order_completed')",
        },
        {
            content: "Back to the contact",
            trigger: ".o_breadcrumb .breadcrumb-item a:contains('Lan Tour')",
            run: "click",
        },
        {
            content: "The workspaces smart button lists the contact's subscriptions",
            trigger: ".o_form_view button[name=action_gobysend_view_subscriptions]",
            run: "click",
        },
        {
            trigger: ".o_breadcrumb .active:contains('Workspaces of Lan Tour')",
        },
        {
            content: "Open the subscription",
            trigger: ".o_list_view .o_data_row:contains('Shop UI') .o_data_cell[name=external_id]",
            run: "click",
        },
        {
            content: "Its consent history is the proof of each change",
            trigger: ".o_form_view .o_field_widget[name=consent_log_ids] .o_data_row:contains('Unsubscribed'):contains('Tracking API')",
        },
        {
            content: "Nothing is pending, so there is no confirmation to send",
            trigger: ".o_form_view:not(:has(button[name=action_send_confirmation])) .o_field_widget[name=email_state]:contains('Subscribed')",
        },
    ],
});

/** A restricted Gobysend user sees only the workspaces they are a member of. */
registry.category("web_tour.tours").add("gobysend_restricted_user_tour", {
    url: "/odoo",
    steps: () => [
        ...stepUtils.goToAppSteps("gobysend_automation.gobysend_menu_root", "Open the Gobysend app"),
        {
            content: "The user's own workspace is listed",
            trigger: ".o_kanban_renderer .o_kanban_record:contains('Shop A')",
        },
        {
            content: "Other workspaces are not",
            trigger: ".o_kanban_renderer:not(:has(.o_kanban_record:contains('Shop B')))",
        },
        {
            content: "Users cannot create workspaces",
            trigger: ".o_control_panel:not(:has(.o-kanban-button-new))",
        },
        {
            content: "Nor reach the configuration",
            trigger: ".o_main_navbar .o_menu_sections:not(:has(:contains('Configuration')))",
        },
        {
            content: "Open the Workspaces menu again",
            trigger: ".o_main_navbar .o_menu_sections [data-menu-xmlid='gobysend_automation.gobysend_workspace_menu']",
            run: "click",
        },
        {
            content: "Switch to the list view",
            trigger: ".o_switch_view.o_list",
            run: "click",
        },
        {
            trigger: ".o_list_view .o_data_row:contains('Shop A')",
        },
        {
            content: "Exactly one row",
            trigger: ".o_list_view:not(:has(.o_data_row:nth-child(2)))",
        },
        ...stepUtils.goToAppSteps("contacts.menu_contacts", "Open the Contacts app"),
        {
            content: "Look for a contact subscribed in the user's workspace and in another one",
            trigger: ".o_searchview_input",
            run: "edit Lan Tour && press Enter",
        },
        {
            trigger: ".o_kanban_record:contains('Lan Tour')",
            run: "click",
        },
        {
            content: "One workspace counted: the user's own",
            trigger: ".o_form_view button[name=action_gobysend_view_subscriptions]:contains('1')",
        },
        {
            content: "The other workspace's events and devices are not counted",
            trigger:
                ".o_form_view:not(:has(button[name=action_gobysend_view_events])):not(:has(button[name=action_gobysend_view_devices]))",
        },
        {
            trigger: ".o_notebook_headers a[name=gobysend_profile]",
            run: "click",
        },
        {
            content: "The profile shows the user's workspace only",
            trigger: ".o_field_widget[name=gobysend_subscription_ids] .o_data_row:contains('Shop A')",
        },
        {
            trigger: ".o_field_widget[name=gobysend_subscription_ids]:not(:has(.o_data_row:contains('Shop UI')))",
        },
        {
            content: "No attribute of the other workspace",
            trigger: ".o_field_widget[name=gobysend_attribute_value_ids]:not(:has(.o_data_row))",
        },
        {
            content: "No event of the other workspace",
            trigger: ".o_field_widget[name=gobysend_event_ids]:not(:has(.o_data_row))",
        },
        {
            content: "No device of the other workspace",
            trigger: ".o_field_widget[name=gobysend_device_ids]:not(:has(.o_data_row))",
        },
    ],
});
