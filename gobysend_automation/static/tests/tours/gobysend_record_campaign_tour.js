/** @odoo-module **/

import { registry } from "@web/core/registry";

/**
 * A marketer sets up a "lead won" campaign: it fires when a lead's stage changes to a won
 * stage, reaches the lead's customer and sends them a message that names the lead. The test
 * then wins a lead and finds the message in the outbox. Run in debug mode, where the "After"
 * filter can be typed as code.
 */
registry.category("web_tour.tours").add("gobysend_record_campaign_tour", {
    url: "/odoo/action-gobysend_automation.gobysend_campaign_action/new?debug=1",
    steps: () => [
        {
            content: "Name the campaign",
            trigger: ".o_form_view .o_field_widget[name=name] input",
            run: "edit Lead won",
        },
        {
            content: "Choose the workspace",
            trigger: ".o_form_view .o_field_widget[name=workspace_id] input",
            run: "edit Shop Leads",
        },
        {
            trigger: ".o-autocomplete--dropdown-item > a:contains('Shop Leads')",
            run: "click",
        },
        {
            content: "It fires when records change",
            trigger: ".o_form_view .o_field_widget[name=trigger_kind] select",
            run: "selectByLabel On changed data",
        },
        {
            content: "Records of leads",
            trigger: ".o_form_view .o_field_widget[name=model_id] input",
            run: "edit Lead/Opportunity",
        },
        {
            trigger: ".o-autocomplete--dropdown-item > a:contains('Lead/Opportunity')",
            run: "click",
        },
        {
            content: "The lead's customer is the contact",
            trigger: ".o_form_view .o_field_widget[name=partner_path] input",
            run: "edit partner_id",
        },
        {
            content: "The stage is the required field",
            trigger: ".o_form_view .o_field_widget[name=trigger_field_ids] input",
            run: "edit Stage",
        },
        {
            trigger: ".o-autocomplete--dropdown-item > a:contains('Stage (Lead/Opportunity)')",
            run: "click",
        },
        {
            content: "After the change, the stage is a won one",
            trigger: ".o_form_view .o_field_widget[name=filter_domain] .o_domain_selector_debug_container textarea",
            run: "edit [(\"stage_id.is_won\", \"=\", True)]",
        },
        {
            content: "Save the campaign",
            trigger: ".o_form_view .o_form_button_save",
            run: "click",
        },
        {
            content: "Saved",
            trigger: ".o_form_view .o_form_saved",
        },
        {
            content: "Open the workflow",
            trigger: ".o_notebook .nav-link:contains('Workflow')",
            run: "click",
        },
        {
            content: "Switch the workflow drawing to the list of steps",
            trigger: ".o_gobysend_workflow_toggle:contains('Show the list of steps')",
            run: "click",
        },
        {
            content: "Add a step",
            trigger: ".o_field_widget[name=step_ids] .o_field_x2many_list_row_add a",
            run: "click",
        },
        {
            content: "Send on the workspace's SMS channel",
            trigger: ".modal .o_field_widget[name=channel_id] input",
            run: "edit Leads SMS",
        },
        {
            trigger: ".o-autocomplete--dropdown-item > a:contains('Leads SMS')",
            run: "click",
        },
        {
            content: "Write the message",
            trigger: ".modal .o_field_widget[name=body] textarea",
            run: "edit Congratulations {{ contact.name }}: {{ record.name }} is {{ record.stage_id }}.",
        },
        {
            content: "Keep the step",
            trigger: ".modal .o_form_button_save",
            run: "click",
        },
        {
            content: "The step is listed",
            trigger: ".o_field_widget[name=step_ids] .o_data_row:contains('Leads SMS')",
        },
        {
            content: "Save",
            trigger: ".o_form_view .o_form_button_save",
            run: "click",
        },
        {
            content: "Saved with its step",
            trigger: ".o_form_view .o_form_saved .o_field_widget[name=step_ids] .o_data_row",
        },
        {
            content: "Launch",
            trigger: ".o_form_view button[name=action_launch]",
            run: "click",
        },
        {
            content: "The campaign runs",
            trigger: ".o_form_view .o_statusbar_status button.o_arrow_button_current:contains('Running')",
        },
    ],
});
