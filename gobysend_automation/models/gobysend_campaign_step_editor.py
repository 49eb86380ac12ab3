from odoo import _, api, models
from odoo.exceptions import UserError

from .. import kinds

# Room left between siblings when they are renumbered, so that most insertions fit without
# touching the other steps.
SEQUENCE_GAP = 10


class GobysendCampaignStep(models.Model):
    """What the campaign form's workflow editor reads and where it puts new steps."""

    _inherit = "gobysend.campaign.step"

    @api.depends("kind")
    def _compute_summary(self):
        # The step form shows the groups of its kind's fields (``kind_fields``): a new step made
        # in the editor's dialog, or one whose kind is changed there, needs them computed as the
        # kind is chosen, which the form's onchange only does for fields that depend on it.
        return super()._compute_summary()

    @api.model
    def workflow_step_kinds(self):
        """The kinds of step the editor offers, in the registry's order."""
        ordered = sorted(kinds.STEPS.values(), key=lambda kind: kind.sequence)
        return [{"key": kind.key, "label": self.env._(kind.label), "icon": kind.icon} for kind in ordered]

    @api.model
    def workflow_tree(self, campaign_id):
        """The steps of a campaign as the editor draws them: one dict per step with its place in
        the tree (parent, branch, sequence), the branches of its kind and its live counts."""
        campaign = self.env["gobysend.campaign"].browse(campaign_id)
        campaign.check_access("read")
        steps = campaign.step_ids.sorted(lambda step: (step.sequence, step.id))
        nodes = []
        for step in steps:
            kind = kinds.STEPS.get(step.kind)
            branches = list(kind.branch_labels(step)) if kind else []
            counts = {
                "waiting": step.journeys_here,
                "done": step.done_count,
                "sent": step.sent_count,
                "opened": step.opened_count,
                "clicked": step.clicked_count,
                "converted": step.converted_count,
            }
            nodes.append(
                {
                    "id": step.id,
                    "name": step.name or "",
                    "kind": step.kind,
                    "kind_label": self.env._(kind.label) if kind else step.kind,
                    "icon": step.kind_icon or "fa-circle",
                    "summary": step.summary or "",
                    "parent_id": step.parent_id.id or False,
                    "branch": step.branch or False,
                    "sequence": step.sequence,
                    "branches": branches,
                    "branch_names": {label: kind.branch_name(self.env, label) for label in branches},
                    "terminal": bool(kind and kind.terminal),
                    "counts": counts,
                }
            )
        return {"steps": nodes, "kinds": self.workflow_step_kinds()}

    @api.model
    def workflow_insert_position(self, campaign_id, after_step_id=False, parent_id=False, branch=False):
        """Where a new step goes: right after step ``after_step_id`` (same parent and branch), or
        first on ``branch`` of ``parent_id`` (the top of the workflow without either). Renumbers the
        siblings when no sequence is free there; returns the new step's parent, branch and sequence."""
        campaign = self.env["gobysend.campaign"].browse(campaign_id)
        campaign.check_access("write")
        if after_step_id:
            after = self.browse(after_step_id).exists()
            if not after or after.campaign_id != campaign:
                raise UserError(_("The step to add after is no longer in this campaign; reload the page."))
            parent, branch = after.parent_id, after.branch or False
        else:
            parent = self.browse(parent_id).exists() if parent_id else self.browse()
            if parent_id and (not parent or parent.campaign_id != campaign):
                raise UserError(_("The step to add under is no longer in this campaign; reload the page."))
            branch = branch or False
            after = self.browse()
        siblings = campaign.step_ids.filtered(
            lambda step: step.parent_id == parent and (step.branch or False) == branch
        ).sorted(lambda step: (step.sequence, step.id))
        index = list(siblings).index(after) + 1 if after else 0
        before = siblings[index - 1] if index else None
        following = siblings[index] if index < len(siblings) else None
        low = before.sequence if before else None
        high = following.sequence if following else None
        if low is None and high is None:
            sequence = SEQUENCE_GAP
        elif high is None:
            sequence = low + SEQUENCE_GAP
        elif low is None and high > 0:
            sequence = high // 2
        elif low is not None and high - low > 1:
            sequence = (low + high) // 2
        else:
            # No free number between the neighbours: spread the siblings out, keeping their order.
            for position, sibling in enumerate(siblings):
                gap = 1 if position >= index else 0
                sibling.sequence = (position + 1 + gap) * SEQUENCE_GAP
            sequence = (index + 1) * SEQUENCE_GAP
        return {"parent_id": parent.id or False, "branch": branch if parent else False, "sequence": sequence}
