/** @odoo-module **/

import { registry } from "@web/core/registry";
import { stepUtils } from "@web_tour/tour_service/tour_utils";

/**
 * A marketer describes an audience: the form counts and samples the matching contacts before
 * the segment is saved.
 */
registry.category("web_tour.tours").add("gobysend_segment_tour", {
    url: "/odoo",
    steps: () => [
        ...stepUtils.goToAppSteps("gobysend_automation.gobysend_menu_root", "Open the Gobysend app"),
        {
            content: "Open the segments",
            trigger: ".o_main_navbar [data-menu-xmlid='gobysend_automation.gobysend_segment_menu']",
            run: "click",
        },
        {
            content: "Create a segment",
            trigger: ".o_list_button_add",
            run: "click",
        },
        {
            content: "Name it",
            trigger: ".o_form_view .o_field_widget[name=name] input",
            run: "edit Recent contacts",
        },
        {
            content: "Choose the workspace",
            trigger: ".o_form_view .o_field_widget[name=workspace_id] input",
            run: "edit Shop UI",
        },
        {
            trigger: ".o-autocomplete--dropdown-item:contains('Shop UI')",
            run: "click",
        },
        {
            content: "Add a condition",
            trigger: ".o_field_widget[name=condition_ids] .o_field_x2many_list_row_add a",
            run: "click",
        },
        {
            content: "Contacts who joined recently",
            trigger: ".modal .o_field_widget[name=kind] select",
            run: "selectByLabel Became a contact",
        },
        {
            content: "Within the last 30 days",
            trigger: ".modal .o_field_widget[name=days] input",
            run: "edit 30",
        },
        {
            content: "Keep the condition",
            trigger: ".modal .o_form_button_save",
            run: "click",
        },
        {
            content: "The condition is listed",
            trigger: ".o_field_widget[name=condition_ids] .o_data_row:contains('Became a contact')",
        },
        {
            content: "The live count shows the matching contact before saving",
            trigger: ".o_form_view .o_field_widget[name=preview_count]:contains('1')",
        },
        {
            content: "And a sample of the members",
            trigger: ".o_field_widget[name=preview_partner_ids] .o_data_row:contains('Lan Tour')",
        },
        {
            content: "Save the segment",
            trigger: ".o_form_view .o_form_button_save",
            run: "click",
        },
        {
            content: "Saved: the members and the size over time can be opened",
            trigger: ".o_form_view button[name=action_view_history]",
        },
    ],
});
