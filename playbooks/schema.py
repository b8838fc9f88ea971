"""The schema of playbook content (the YAML files in this folder), gathered from its modules:
playbooks/schema_base.py (what every playbook has, its e-mails), and one module per playbook
(schema_onboarding, schema_renewal, schema_sla, schema_churn, schema_nps). Import from here or from
the module; `PLAYBOOK_MODELS` / `SNAPSHOT_MODELS` hold every playbook once this module is imported.
"""

from __future__ import annotations

from playbooks.schema_base import *  # noqa: F401,F403
from playbooks.schema_base import _unique  # noqa: F401
from playbooks.schema_churn import *  # noqa: F401,F403
from playbooks.schema_nps import *  # noqa: F401,F403
from playbooks.schema_onboarding import *  # noqa: F401,F403
from playbooks.schema_renewal import *  # noqa: F401,F403
from playbooks.schema_sla import *  # noqa: F401,F403
