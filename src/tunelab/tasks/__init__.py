"""Tasks are a closed set of ``Task`` records (see :mod:`tunelab.tasks.base`), each registered
in one line at the end of its module. Import order is listing order."""

from tunelab.tasks import (  # noqa: F401  (each module registers its task)
    generation,
    multi_label,
    question_answering,
    regression,
    text_classification,
    token_classification,
)
from tunelab.tasks.base import LOWER_IS_BETTER, TASKS, Task, get_task, register_task
from tunelab.tasks.examples import Examples

__all__ = ["LOWER_IS_BETTER", "TASKS", "Examples", "Task", "get_task", "register_task"]
