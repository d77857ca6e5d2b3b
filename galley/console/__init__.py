"""``galley console``: the whole lifecycle in a browser, for this machine or a cluster.

Training jobs with live curves, models with their evaluation, online services with Stop and
Start and their test page, and a form that creates a preset-algorithm TrainingJob. It reads and
changes resources only through the backend the CLI uses (:mod:`galley.console.views`).
"""
