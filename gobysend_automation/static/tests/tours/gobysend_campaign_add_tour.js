/** @odoo-module **/

import { registry } from "@web/core/registry";

/**
 * A sales user picks two contacts in the list, adds them to a running campaign, and finds the
 * journey on a contact's form.
 */
registry.category("web_tour.tours").add("gobysend_campaign_add_tour", {
    steps: () => [
        {
            content: "Show the contacts as a list",
            trigger: ".o_control_panel .o_switch_view.o_list",
            run: "click",
        },
        {
            content: "Look for the tour's contacts",
            trigger: ".o_searchview_input",
            run: "edit Tour Lead && press Enter",
        },
        {
            content: "The tour's contacts are listed",
            trigger: ".o_list_view .o_data_row:contains('Tour Lead Two')",
        },
        {
            content: "Select the first contact",
            trigger: ".o_data_row:contains('Tour Lead One') .o_list_record_selector input[type=checkbox]",
            run: "click",
        },
        {
            content: "Select the second contact",
            trigger: ".o_data_row:contains('Tour Lead Two') .o_list_record_selector input[type=checkbox]",
            run: "click",
        },
        {
            content: "Open the actions",
            trigger: ".o_cp_action_menus button",
            run: "click",
        },
        {
            content: "Add to campaign",
            trigger: ".o-dropdown--menu .dropdown-item:contains('Add to Campaign')",
            run: "click",
        },
        {
            content: "Two contacts are chosen",
            trigger: ".modal .o_field_widget[name=record_count]:contains('2')",
        },
        {
            content: "Choose the campaign",
            trigger: ".modal .o_field_widget[name=campaign_id] input",
            run: "edit Spring",
        },
        {
            content: "A campaign of a workspace the user is not in is not offered",
            trigger:
                ".o-autocomplete--dropdown-menu:has(.o-autocomplete--dropdown-item:contains('Spring welcome')):not(:has(.o-autocomplete--dropdown-item:contains('Spring elsewhere')))",
        },
        {
            content: "Choose the running campaign of the user's workspace",
            trigger: ".o-autocomplete--dropdown-item:contains('Spring welcome')",
            run: "click",
        },
        {
            content: "Add them",
            trigger: ".modal button[name=action_add]",
            run: "click",
        },
        {
            content: "Both were added",
            trigger: ".modal .o_gobysend_added:contains('2')",
        },
        {
            trigger: ".modal .o_gobysend_already:contains('0')",
        },
        {
            content: "Close the report",
            trigger: ".modal .modal-footer button:contains('Close')",
            run: "click",
        },
        {
            content: "Look for the first contact: the list reloads without the selection",
            trigger: ".o_searchview_input",
            run: "edit Tour Lead One && press Enter",
        },
        {
            content: "Open the first contact",
            trigger:
                ".o_list_view:not(:has(.o_data_row:contains('Tour Lead Two'))):not(:has(.o_list_record_selector input:checked)) .o_data_row:contains('Tour Lead One') .o_data_cell[name=complete_name]",
            run: "click",
        },
        {
            content: "Its form is open",
            trigger: ".o_form_view .o_breadcrumb:contains('Tour Lead One')",
        },
        {
            content: "Open the Marketing Profile tab",
            trigger: ".o_notebook_headers a[name=gobysend_profile]",
            run: "click",
        },
        {
            content: "The journey is listed with its campaign and state",
            trigger: ".o_field_widget[name=gobysend_journey_ids] .o_kanban_record:contains('Spring welcome'):contains('Active')",
        },
    ],
});
