"""Tasks are a closed set of ``Task`` records (see :mod:`tunelab.tasks.base`), each registered
in one line at the end of its module. Import order is listing order."""

# each module registers its task; this order is the listing order (`tunelab tasks`)
# isort: off
from tunelab.tasks import text_classification, multi_label, regression  # noqa: F401
from tunelab.tasks import token_classification, question_answering, generation  # noqa: F401
from tunelab.tasks import sentence_embedding, language_modeling  # noqa: F401

# isort: on
from tunelab.tasks.base import LOWER_IS_BETTER, TASKS, Task, get_task, register_task
from tunelab.tasks.examples import Examples

__all__ = ["LOWER_IS_BETTER", "TASKS", "Examples", "Task", "get_task", "register_task"]
