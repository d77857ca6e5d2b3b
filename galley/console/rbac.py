"""The console's permissions when the chart installs it: what its pages read, and the changes a
user makes through it (create a resource, Stop and Start), on Galley's resources only.

It has no access to Secrets, and creates or changes no workload: Jobs, Deployments and Services
stay the operator's. The chart renders these rules (``galley.consoleRules``), and a test keeps
the two equal and checks them against the operator's.
"""

from __future__ import annotations

from typing import Any

from galley.api.meta import GROUP

RULES: list[dict[str, Any]] = [
    {"apiGroups": [GROUP], "resources": ["trainingjobs", "models", "onlineservices"],
     "verbs": ["get", "list", "create"]},
    # Stop and Start: spec.stopped and the galley.dev/start annotation, as `galley stop|start` do.
    {"apiGroups": [GROUP], "resources": ["onlineservices"], "verbs": ["patch"]},
    # Conditions' context and logs: events about the resources, and the trainer's and predictor's pods.
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
]
