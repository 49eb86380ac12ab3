/** @odoo-module **/

import { registry } from "@web/core/registry";

function fillStep(channel, body) {
    return [
        {
            content: "Choose the channel",
            trigger: ".modal .o_field_widget[name=channel_id] input",
            run: `edit ${channel}`,
        },
        {
            trigger: `.o-autocomplete--dropdown-item:contains('${channel}')`,
            run: "click",
        },
        {
            content: "Write the message",
            trigger: ".modal .o_field_widget[name=body] textarea",
            run: `edit ${body}`,
        },
        {
            content: "Save the step",
            trigger: ".modal .o_form_button_save",
            run: "click",
        },
        {
            content: "The dialog is closed",
            trigger: "body:not(:has(.modal))",
        },
    ];
}

/**
 * A marketer builds a workflow in the campaign form's drawing: a message, a condition on a tag
 * and, on its "yes" branch, a second message; edits and deletes a step, then launches it.
 */
registry.category("web_tour.tours").add("gobysend_workflow_editor_tour", {
    url: "/odoo/action-gobysend_automation.gobysend_campaign_action/new",
    steps: () => [
        {
            content: "Name the campaign",
            trigger: ".o_form_view .o_field_widget[name=name] input",
            run: "edit Editor tour",
        },
        {
            content: "Choose its workspace",
            trigger: ".o_field_widget[name=workspace_id] input",
            run: "edit Editor shop",
        },
        {
            trigger: ".o-autocomplete--dropdown-item:contains('Editor shop')",
            run: "click",
        },
        {
            content: "Open the workflow",
            trigger: ".o_notebook_headers a[name=workflow]",
            run: "click",
        },
        {
            content: "The workflow is empty: add its first step",
            trigger: ".o_gobysend_workflow_flow:not(:has(.o_gobysend_workflow_node)) .o_gobysend_workflow_add_button[data-add='head:0:']",
            run: "click",
        },
        {
            content: "The step kinds of the registry are offered: send a message",
            trigger: ".o_gobysend_workflow_kinds .o_gobysend_workflow_kind_choice[data-kind=send]",
            run: "click",
        },
        {
            content: "The campaign was saved before the step's dialog opened",
            trigger: ".o_breadcrumb:contains('Editor tour')",
        },
        ...fillStep("Editor SMS", "Hello {{ contact.name }}"),
        {
            content: "The step is drawn with its kind and summary",
            trigger: ".o_gobysend_workflow_node[data-kind=send]:contains('Send')",
        },
        {
            content: "Add a step after it",
            trigger: ".o_gobysend_workflow_add_button[data-add^='after:']",
            run: "click",
        },
        {
            content: "A condition",
            trigger: ".o_gobysend_workflow_kind_choice[data-kind=condition]",
            run: "click",
        },
        {
            content: "It checks a tag",
            trigger: ".modal .o_field_widget[name=condition_kind] select",
            run: 'select "tag"',
        },
        {
            content: "The tag",
            trigger: ".modal .o_field_widget[name=tag_id] input",
            run: "edit Editor VIP",
        },
        {
            trigger: ".o-autocomplete--dropdown-item:contains('Editor VIP')",
            run: "click",
        },
        {
            content: "Save the condition",
            trigger: ".modal .o_form_button_save",
            run: "click",
        },
        {
            content: "The condition is drawn below the message with its two branches side by side",
            trigger:
                ".o_gobysend_workflow_node[data-kind=condition] ~ .o_gobysend_workflow_branches:has(.o_gobysend_workflow_branch_column[data-branch=yes] + .o_gobysend_workflow_branch_column[data-branch=no])",
        },
        {
            content: "The branches are named for people, not by their keys",
            trigger:
                ".o_gobysend_workflow_branch_column[data-branch=yes] > .o_gobysend_workflow_branch_label:contains(/^Yes$/)",
        },
        {
            content: "Add a step at the head of the yes branch",
            trigger: ".o_gobysend_workflow_branch_column[data-branch=yes] .o_gobysend_workflow_add_button",
            run: "click",
        },
        {
            trigger: ".o_gobysend_workflow_kind_choice[data-kind=send]",
            run: "click",
        },
        ...fillStep("Editor SMS", "A gift for you"),
        {
            content: "The message hangs on the yes branch",
            trigger: ".o_gobysend_workflow_branch_column[data-branch=yes] .o_gobysend_workflow_node[data-kind=send]",
        },
        {
            content: "Add an exit on the no branch",
            trigger: ".o_gobysend_workflow_branch_column[data-branch=no] .o_gobysend_workflow_add_button",
            run: "click",
        },
        {
            trigger: ".o_gobysend_workflow_kind_choice[data-kind=exit]",
            run: "click",
        },
        {
            content: "Save the exit",
            trigger: ".modal .o_form_button_save",
            run: "click",
        },
        {
            content: "Delete the exit again",
            trigger: ".o_gobysend_workflow_branch_column[data-branch=no] .o_gobysend_workflow_node[data-kind=exit] .o_gobysend_workflow_delete",
            run: "click",
        },
        {
            content: "The confirmation says, from the server, what becomes of the journeys standing there",
            trigger: ".modal-body:contains('Delete the step'):contains('No journey is at this step.')",
        },
        {
            content: "Confirm",
            trigger: ".modal-footer .btn-primary:contains('Delete')",
            run: "click",
        },
        {
            content: "The exit is gone",
            trigger:
                ".o_gobysend_workflow_flow:not(:has(.o_gobysend_workflow_node[data-kind=exit])):has(.o_gobysend_workflow_branch_column[data-branch=yes] .o_gobysend_workflow_node)",
        },
        {
            content: "Edit the first message",
            trigger: ".o_gobysend_workflow_flow > .o_gobysend_workflow_branch > .o_gobysend_workflow_node[data-kind=send] .o_gobysend_workflow_edit",
            run: "click",
        },
        {
            content: "Rename it",
            trigger: ".modal .o_field_widget[name=name] input",
            run: "edit Welcome",
        },
        {
            trigger: ".modal .o_form_button_save",
            run: "click",
        },
        {
            content: "The new name is drawn",
            trigger: ".o_gobysend_workflow_node[data-kind=send]:contains('Welcome')",
        },
        {
            content: "The list of steps is still there",
            trigger: ".o_gobysend_workflow_toggle",
            run: "click",
        },
        {
            trigger: ".o_field_widget[name=step_ids] .o_list_renderer .o_data_row:contains('Welcome')",
        },
        {
            content: "Back to the drawing",
            trigger: ".o_gobysend_workflow_toggle",
            run: "click",
        },
        {
            content: "Launch the campaign",
            trigger: ".o_form_statusbar button[name=action_launch]",
            run: "click",
        },
        {
            content: "It runs",
            trigger: ".o_form_statusbar .o_arrow_button_current:contains('Running')",
        },
    ],
});

/**
 * The same marketer comes back once the engine has advanced the campaign's journeys: the drawing
 * counts the contacts each step passed, and the VIP contact's journey shows every step it took.
 */
registry.category("web_tour.tours").add("gobysend_workflow_journey_tour", {
    steps: () => [
        {
            content: "Open the workflow",
            trigger: ".o_notebook_headers a[name=workflow]",
            run: "click",
        },
        {
            content: "Both contacts passed the first message",
            trigger:
                ".o_gobysend_workflow_flow > .o_gobysend_workflow_branch > .o_gobysend_workflow_node[data-kind=send]:contains('Welcome') .o_gobysend_count_done:contains(/^2\\s*done$/)",
        },
        {
            content: "Both went through the condition",
            trigger: ".o_gobysend_workflow_node[data-kind=condition] .o_gobysend_count_done:contains(/^2\\s*done$/)",
        },
        {
            content: "Only the VIP went on to the gift on the yes branch",
            trigger:
                ".o_gobysend_workflow_branch_column[data-branch=yes] .o_gobysend_workflow_node[data-kind=send] .o_gobysend_count_done:contains(/^1\\s*done$/)",
        },
        {
            content: "Open the campaign's journeys",
            trigger: ".oe_stat_button[name=action_view_journeys]",
            run: "click",
        },
        {
            content: "The journeys come grouped by state: both are completed",
            trigger: ".o_list_renderer .o_group_header:contains(/Completed\\s*\\(2\\)/)",
            run: "click",
        },
        {
            content: "Open the VIP's journey",
            trigger: ".o_list_renderer .o_data_row td[name=partner_id]:contains('Editor Vip')",
            run: "click",
        },
        {
            content: "It is completed",
            trigger: ".o_form_statusbar .o_arrow_button_current:contains('Completed')",
        },
        {
            content: "Its timeline: the first message, the condition's yes branch, then the gift",
            trigger:
                ".o_gobysend_timeline:has(li:nth-child(1):contains('Welcome')):has(li:nth-child(2):contains('Took the “Yes” branch')):has(li:nth-child(3):contains('Send a message'))",
        },
    ],
});
