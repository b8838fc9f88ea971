"""A task the product wrote to the CRM (activities/crm_write.py), completed there: ours is
completed and its play told, as if done in the console.

HubSpot sends it as a generic webhook (`object.propertyChange`, objectTypeId 0-27,
`hs_task_status` = COMPLETED); Salesforce as an Outbound Message on Task (the whole record:
`IsClosed` true, or `Status` Completed). The CRM's task is found through `crm_records`. A task
of the CRM the product did not create, a status other than completed (reopening in the CRM does
not reopen ours), or a task already completed or cancelled here is acknowledged and changes
nothing. The completion is not written back to that CRM (it is where it came from).
"""

from __future__ import annotations

from playbooks.crm_connections import Connection
from starter import steering
from starter.adapters.common import Incoming
from starter.events.context import Context, Result


def _completed(inc: Incoming, conn: Connection) -> tuple[bool, str]:
    """(completed?, the status in the CRM's words)."""
    p = inc.properties
    if conn.source == "hubspot":
        status = (p.get("hs_task_status") or "").strip().upper()
        return status == "COMPLETED", status or "(no hs_task_status)"
    status = (p.get("Status") or "").strip()
    closed = (p.get("IsClosed") or "").strip().lower() == "true"
    return closed or status.lower() == "completed", status or ("closed" if closed else "(no Status)")


async def task_status(ctx: Context, inc: Incoming, conn: Connection) -> Result:
    """Complete our task when the CRM's copy of it is completed."""
    done, status = _completed(inc, conn)
    row = await ctx.pool.fetchrow(
        "SELECT t.id, t.status, t.workflow_id, t.account_id, t.title FROM crm_records r JOIN tasks t ON t.id = r.task_id"
        " WHERE r.connection = $1 AND r.object_type = 'task' AND r.crm_id = $2", conn.name, inc.object_id)
    if row is None:
        return Result(f"ignored: {conn.name} task {inc.object_id} is not one the product created")
    if not done:
        return Result(f"ignored: task status {status} (only a completion is taken)", account_id=row["account_id"],
                      workflow_id=row["workflow_id"])
    if row["status"] in ("completed", "cancelled"):
        return Result(f"unchanged: task {row['id']} is already {row['status']}", account_id=row["account_id"],
                      workflow_id=row["workflow_id"])
    await steering.complete_task(ctx.client, ctx.pool, row["id"], f"{conn.name} (CRM)", via=conn.name)
    return Result(f"completed task {row['id']} ({row['title']}); {row['workflow_id']} was told",
                  account_id=row["account_id"], workflow_id=row["workflow_id"])
