"""The tasks that the shared training loop (`seg2vid_jax.train`) runs, chosen by config.task.

Each task module has the same shape (`base.Task`): its model(s) and state, its train step,
its evaluation (through `base.run_evaluation`) and its sample sheets.
"""

from seg2vid_jax.tasks import img2img
from seg2vid_jax.tasks import img2vid
from seg2vid_jax.tasks.base import Task

TASKS = {task.name: task for task in (img2vid.TASK, img2img.TASK)}


def get_task(config) -> Task:
  """The task of a config: 'img2vid' (stage 2, the default) or 'img2img' (stage 1)."""
  name = config.get('task', 'img2vid')
  if name not in TASKS:
    raise ValueError(f'config.task={name!r}: use one of {sorted(TASKS)}')
  return TASKS[name]
