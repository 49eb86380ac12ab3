/** @odoo-module **/

import { Component, onWillStart, onWillUpdateProps, useState } from "@odoo/owl";
import { ConfirmationDialog } from "@web/core/confirmation_dialog/confirmation_dialog";
import { _t } from "@web/core/l10n/translation";
import { registry } from "@web/core/registry";
import { useService } from "@web/core/utils/hooks";
import { X2ManyField, x2ManyField } from "@web/views/fields/x2many/x2many_field";
import { FormViewDialog } from "@web/views/view_dialogs/form_view_dialog";

const STEP_MODEL = "gobysend.campaign.step";

/** The steps hanging on ``branch`` of step ``parentId`` (the top of the workflow without them), in
 * the order journeys take them. */
function childrenOf(steps, parentId, branch) {
    return steps
        .filter(
            (step) => (step.parent_id || false) === (parentId || false) && (step.branch || false) === (branch || false)
        )
        .sort((a, b) => a.sequence - b.sequence || a.id - b.id);
}

/** One branch of the workflow (the top of it, or one branch of a step): its steps top-down,
 * each step's own branches side by side under it. */
export class WorkflowBranch extends Component {
    static template = "gobysend_automation.WorkflowBranch";
    static props = {
        editor: Object,
        parentId: { type: [Number, Boolean] },
        branch: { type: [String, Boolean] },
    };

    setup() {
        // Each branch reads the editor's state itself, so that it redraws when the state changes.
        this.state = useState(this.props.editor.state);
    }

    get steps() {
        return childrenOf(this.state.steps, this.props.parentId, this.props.branch);
    }

    isAdding(key) {
        return this.state.adding === key;
    }

    headKey() {
        return `head:${this.props.parentId || 0}:${this.props.branch || ""}`;
    }
}
WorkflowBranch.components = { WorkflowBranch };

/** The campaign's steps drawn as a flow, with buttons to add, edit and delete steps; the
 * standard list of steps stays one click away. */
export class WorkflowField extends X2ManyField {
    static template = "gobysend_automation.WorkflowField";
    static components = { ...X2ManyField.components, WorkflowBranch };

    setup() {
        super.setup();
        this.orm = useService("orm");
        this.dialogService = useService("dialog");
        this.workflow = useState({ steps: [], kinds: [], showList: false, adding: false });
        this.editor = {
            state: this.workflow,
            toggleAdding: (key) => {
                this.workflow.adding = this.workflow.adding === key ? false : key;
            },
            readonly: () => this.props.readonly,
            addStep: this.addStep.bind(this),
            editStep: this.editStep.bind(this),
            deleteStep: this.deleteStep.bind(this),
            countLabels: COUNT_LABELS,
        };
        onWillStart(() => this.loadTree(this.props.record));
        onWillUpdateProps(async (nextProps) => {
            // Reload after the form saved or reloaded the campaign (e.g. Launch), not while it is edited.
            if (!nextProps.record.dirty) {
                await this.loadTree(nextProps.record);
            }
        });
    }

    async loadTree(record) {
        if (!record.resId) {
            const kinds = this.workflow.kinds.length
                ? this.workflow.kinds
                : await this.orm.call(STEP_MODEL, "workflow_step_kinds", []);
            Object.assign(this.workflow, { steps: [], kinds });
            return;
        }
        const tree = await this.orm.call(STEP_MODEL, "workflow_tree", [record.resId]);
        Object.assign(this.workflow, tree);
    }

    toggleList() {
        this.workflow.showList = !this.workflow.showList;
    }

    /** Steps are created in their own dialogs: the campaign must exist (and be saved) first. */
    async saveCampaign() {
        const record = this.props.record;
        if (record.isNew || (await record.isDirty())) {
            return await record.save();
        }
        return true;
    }

    async refresh() {
        await this.props.record.load();
        await this.loadTree(this.props.record);
    }

    async addStep(kind, { afterStepId = false, parentId = false, branch = false }) {
        this.workflow.adding = false;
        if (!(await this.saveCampaign())) {
            return;
        }
        const campaignId = this.props.record.resId;
        const position = await this.orm.call(STEP_MODEL, "workflow_insert_position", [campaignId], {
            after_step_id: afterStepId,
            parent_id: parentId,
            branch,
        });
        this.dialogService.add(FormViewDialog, {
            resModel: STEP_MODEL,
            title: _t("New Step"),
            context: {
                ...this.props.context,
                default_campaign_id: campaignId,
                default_kind: kind,
                default_parent_id: position.parent_id,
                default_branch: position.branch,
                default_sequence: position.sequence,
            },
            onRecordSaved: () => this.refresh(),
        });
    }

    async editStep(step) {
        if (!(await this.saveCampaign())) {
            return;
        }
        this.dialogService.add(FormViewDialog, {
            resModel: STEP_MODEL,
            resId: step.id,
            title: _t("Edit Step"),
            context: this.props.context,
            onRecordSaved: () => this.refresh(),
        });
    }

    async deleteStep(step) {
        if (!(await this.saveCampaign())) {
            return;
        }
        const question = step.branches.length
            ? _t("Delete the step “%s” and the steps on its branches?", step.name || step.kind_label)
            : _t("Delete the step “%s”?", step.name || step.kind_label);
        // What becomes of the journeys standing there, as the server will do it.
        const preview = await this.orm.call(STEP_MODEL, "workflow_removal_preview", [[step.id]]);
        const body = `${question}\n${preview.message}`;
        this.dialogService.add(ConfirmationDialog, {
            title: _t("Delete Step"),
            body,
            confirmLabel: _t("Delete"),
            confirm: async () => {
                await this.orm.unlink(STEP_MODEL, [step.id]);
                await this.refresh();
            },
            cancel: () => {},
        });
    }
}

const COUNT_LABELS = {
    waiting: _t("waiting"),
    done: _t("done"),
    sent: _t("sent"),
    opened: _t("opened"),
    clicked: _t("clicked"),
    converted: _t("converted"),
};

export const workflowField = {
    ...x2ManyField,
    component: WorkflowField,
    displayName: _t("Workflow"),
    supportedTypes: ["one2many"],
};

registry.category("fields").add("gobysend_workflow", workflowField);
