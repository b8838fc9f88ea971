"""The monthly SLA attainment report (seed 001 section 8.1, "Measurement & reporting": a monthly SLA
report on the 2nd of the month for the month before), started by its Temporal Schedule."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.sla import SlaReportActivities
    from core.models import SlaReportRequest
    from workflows.common import run_activity
    from workflows.sla_messages import SlaReportInput


@workflow.defn(name="MonthlySlaReport")
class MonthlySlaReport:
    """Run by a Temporal Schedule on the 2nd of each month: e-mails the month before's SLA attainment
    (by tier and priority, credits owed) to the people the SLA playbook's `report.to` names, once per
    month however often it runs."""

    @workflow.run
    async def run(self, input: SlaReportInput) -> dict:
        month = input.month or (workflow.now().date().replace(day=1) - timedelta(days=1)).replace(day=1)
        report = input.playbook.content.report
        return await run_activity(SlaReportActivities.send_monthly_report, SlaReportRequest(
            month=month, template=input.playbook.template("report"), to=report.to,
        ), summary=f"SLA report of {month:%B %Y} to {', '.join(report.to)}")
