"""What each kind's reconcile does: read children from the watch caches, create what is missing,
decide with :mod:`galley.control`, and say what status to write and when to look again.

One module per kind, and :mod:`.status` for what they share. Run by the work queue's workers
(:mod:`galley.operator.handlers`) for every kind of event, so every function here is idempotent:
children are created only when absent, all state lives in the resources, and status is written
only where it changed, so a reconcile's own write, coming back as a watch event, ends there.
"""

from galley.operator.reconcile.models import reconcile_model
from galley.operator.reconcile.services import reconcile_online_service
from galley.operator.reconcile.status import HANDLER_FIELDS, Next, write_status
from galley.operator.reconcile.training import reconcile_training_job

__all__ = ["HANDLER_FIELDS", "Next", "reconcile_model", "reconcile_online_service", "reconcile_training_job",
           "write_status"]
