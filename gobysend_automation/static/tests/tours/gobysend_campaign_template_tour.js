/** @odoo-module **/

import { registry } from "@web/core/registry";
import { stepUtils } from "@web_tour/tour_service/tour_utils";

/**
 * A marketer opens the template gallery, picks "First-purchase feedback", chooses the workspace and
 * Vietnamese messages, and lands on the new draft campaign's form.
 */
registry.category("web_tour.tours").add("gobysend_campaign_template_tour", {
    url: "/odoo",
    steps: () => [
        ...stepUtils.goToAppSteps("gobysend_automation.gobysend_menu_root", "Open the Gobysend app"),
        {
            content: "Open the campaigns menu",
            trigger: ".o_main_navbar [data-menu-xmlid='gobysend_automation.gobysend_campaign_menu']",
            run: "click",
        },
        {
            content: "Open the template gallery",
            trigger: ".dropdown-item[data-menu-xmlid='gobysend_automation.gobysend_campaign_template_menu']",
            run: "click",
        },
        {
            content: "The gallery shows the abandoned cart template and the channels it needs",
            trigger: ".o_kanban_record:contains('Abandoned cart'):contains('Email, SMS')",
        },
        {
            content: "Use the first-purchase feedback template",
            trigger: ".o_kanban_record:contains('First-purchase feedback') button[name=action_choose]",
            run: "click",
        },
        {
            content: "Choose the workspace",
            trigger: ".modal .o_field_widget[name=workspace_id] input",
            run: "edit Shop Template",
        },
        {
            content: "Pick it",
            trigger: ".o-autocomplete--dropdown-item:contains('Shop Template')",
            run: "click",
        },
        {
            content: "Messages in Vietnamese",
            trigger: ".modal .o_field_widget[name=message_lang] input[data-value=vi]",
            run: "click",
        },
        {
            content: "Vietnamese is chosen",
            trigger: ".modal .o_field_widget[name=message_lang] input[data-value=vi]:checked",
        },
        {
            content: "Create the campaign",
            trigger: ".modal button[name=action_create]",
            run: "click",
        },
        {
            content: "The new draft campaign's form is open",
            trigger: ".o_form_view .o_breadcrumb:contains('First-purchase feedback')",
        },
    ],
});
