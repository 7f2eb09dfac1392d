"""Plan a training run from small proxies — learning rate, batch size, size and tokens, and
the predicted loss — then check the plan against the real run.

* :class:`PlanSpec` — the user's model family, data, loss and optimizer at proxy scale,
  returned by a function referenced as ``module:function``.
* :func:`make_plan` — μP, coord check, proxy learning-rate sweeps, noise scale, stability
  check and a fitted loss law → a :class:`Plan` (``plan.json`` and ``plan.html``).
* :func:`verify_plan` — train the planned run (or read its losses) and score the
  prediction.
"""

from learnmech.plan.spec import PlanSpec, default_loss, load_spec
from learnmech.plan.workflow import Plan, PlanStopped, make_plan, verify_plan

__all__ = [
    "Plan",
    "PlanSpec",
    "PlanStopped",
    "default_loss",
    "load_spec",
    "make_plan",
    "verify_plan",
]
