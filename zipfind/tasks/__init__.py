"""The registry of tasks: a spec's `[task] kind` names one (see zipfind.tasks.base.Task for the interface).

- ``classification``: bursty Zipfian in-context classification (Chan et al. 2022; Reddy 2024).
- ``tokens``: next-token prediction on bursty Zipfian documents of multi-token words (random or English).
"""

from __future__ import annotations

from ..config import TaskConfig
from .base import Shape, Task, slice_batch
from .classification import TASK as CLASSIFICATION
from .tokens import TASK as TOKENS

TASKS: dict[str, Task] = {t.name: t for t in (CLASSIFICATION, TOKENS)}


def get_task(task: TaskConfig | str) -> Task:
    """The task of a config (or of a kind name)."""
    return TASKS[task if isinstance(task, str) else task.kind]


__all__ = ["TASKS", "Task", "Shape", "get_task", "slice_batch"]
