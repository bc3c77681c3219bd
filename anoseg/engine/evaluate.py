"""``anoseg eval``: one entry for every task. Anomaly runs go to ``evaluate_anomaly``, road and scene runs to
``evaluate_scene``; both write ``<run>/eval/epoch_NNN/`` complete or not at all and return its ``metrics.json``."""

from __future__ import annotations

from anoseg.constants import ANOMALY
from anoseg.engine import curves
from anoseg.engine.evaluate_anomaly import Progress, evaluate_anomaly
from anoseg.engine.evaluate_scene import evaluate_scene
from anoseg.engine.runs import RESOLUTIONS, EvalJob
from anoseg.errors import AnosegError

__all__ = ["EvalJob", "evaluate"]


def evaluate(job: EvalJob, progress: Progress | None = None) -> dict:
    """Evaluate the run ``job`` names; write and return the metrics dict (schema ``anoseg.metrics/1``).

    ``progress(description, done, total)`` is called as images are scored. Warnings are in the returned
    ``metrics["warnings"]`` (the caller prints them). Raises ``AnosegError`` for an unknown resolution or protocol,
    a missing manifest or checkpoint.
    """
    if job.resolution not in RESOLUTIONS:
        raise AnosegError(f"--resolution must be one of {', '.join(RESOLUTIONS)}, not {job.resolution!r}")
    if job.run.is_dir():  # the eval curve the result is appended to, checked before the scoring
        curves.check_log(curves.log_file(job.run, curves.EVAL_LOG))
    if job.recipe.task == ANOMALY:
        return evaluate_anomaly(job, progress)
    return evaluate_scene(job, progress)
