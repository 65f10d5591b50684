"""Checkpoints of every task, in one place: the training loop, `--mode=eval`, generation and the
released-checkpoint import all go through these functions.

orbax writes each step into a temporary directory and renames it when complete, so a process
killed while writing (SIGKILL, power loss) leaves only an ignored temporary directory and the
last complete step is restored. What orbax does not cover is handled here: a latest step that
cannot be read (truncated or half-deleted files) is named in a warning, moved aside to
<workdir>/checkpoints_unreadable/ and the step before it is used; a checkpoint that does not fit
the config (another task or model size) stops with an error naming both before any step runs;
a checkpoint that cannot be written (full disk, unwritable workdir) stops with an error naming
the path, and the earlier checkpoints stay.
"""

import time
import uuid

from absl import logging
from etils import epath
import flax
import jax
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp

from seg2vid_jax import tasks
from seg2vid_jax.tasks import base


class CheckpointError(RuntimeError):
  """A checkpoint cannot be written, or does not fit the config."""


class CheckpointWriteError(CheckpointError):
  """The workdir or a checkpoint cannot be written (full disk, permissions, not a directory)."""


class ConfigMismatchError(CheckpointError):
  """The workdir's checkpoint was written by a config with another task or model."""


def directory(workdir: str) -> epath.Path:
  """<workdir>/checkpoints."""
  return epath.Path(base.resolve_workdir(workdir)) / 'checkpoints'


def check_writable(path) -> None:
  """Creates `path` if needed and writes and removes a probe file in it; a
  `CheckpointWriteError` naming the path if that fails."""
  path = epath.Path(path)
  probe = path / f'.write_probe_{uuid.uuid4().hex}'
  try:
    path.mkdir(parents=True, exist_ok=True)
    probe.write_text('seg2vid_jax')
    probe.unlink()
  except OSError as e:
    raise CheckpointWriteError(f'cannot write to {path}: {e}') from e


def manager(workdir: str, config) -> ocp.CheckpointManager:
  """Orbax manager of <workdir>/checkpoints keeping the newest `keep_checkpoints`."""
  path = directory(workdir)
  try:
    return ocp.CheckpointManager(
        str(path), options=ocp.CheckpointManagerOptions(
            max_to_keep=config.keep_checkpoints, create=True,
            cleanup_tmp_directories=True),  # What a killed save left behind.
        item_handlers=ocp.StandardCheckpointHandler())
  except OSError as e:
    raise CheckpointWriteError(f'cannot create the checkpoint directory {path}: {e}') from e


def save(mngr: ocp.CheckpointManager, state, step: int) -> None:
  """Saves `state` as step `step` and waits, so that a crash right after cannot lose it.

  Older steps beyond `keep_checkpoints` are deleted only once this one is complete; if it
  cannot be written, `CheckpointWriteError` names the directory and the steps still there.
  """
  try:
    mngr.save(step, args=ocp.args.StandardSave(state), force=True)
    mngr.wait_until_finished()
  except Exception as e:  # pylint: disable=broad-except  (orbax wraps OSError in its own)
    mngr.reload()
    raise CheckpointWriteError(
        f'cannot write checkpoint step {step} to {mngr.directory}: {e}; the earlier '
        f'checkpoints (steps {list(mngr.all_steps())}) are kept') from e


def _shapes(tree, optimiser=False):
  """{'a/b/c': shape} of a state tree's parameter-like leaves, or of its optimiser state's."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    name = jax.tree_util.keystr(path, simple=True, separator='/')
    if ('opt_state' in name.split('/')[0]) == optimiser:
      out[name] = tuple(getattr(leaf, 'shape', ()))
  return out


def check_fits(saved_tree, state, where: str, config) -> None:
  """`ConfigMismatchError` if the checkpoint's tree (orbax metadata) is not `state`'s: another
  task (other top-level fields), another model (other parameter names or shapes) or another
  optimiser (another optimiser state; a changed learning-rate schedule keeps it)."""
  expected = flax.serialization.to_state_dict(state)
  task = tasks.get_task(config)
  what = (f'config.task={task.name!r} ({task.describe(config)}, '
          f'image_size {tuple(config.image_size)})')
  if set(saved_tree) != set(expected):
    raise ConfigMismatchError(
        f'{where} does not fit the config: it holds the fields {sorted(saved_tree)}, while '
        f'{what} has {sorted(expected)} (a checkpoint of another task?). Use another --workdir '
        'or the config it was trained with.')
  saved, wanted = _shapes(saved_tree), _shapes(expected)
  diffs = [f'{k}: checkpoint {saved.get(k, "missing")}, config {wanted.get(k, "missing")}'
           for k in sorted(set(saved) | set(wanted)) if saved.get(k) != wanted.get(k)]
  if diffs:
    raise ConfigMismatchError(
        f'{where} does not fit {what}: {len(diffs)} parameters differ, e.g. '
        + '; '.join(diffs[:4]) + '. Use another --workdir or the config it was trained with.')
  saved, wanted = _shapes(saved_tree, optimiser=True), _shapes(expected, optimiser=True)
  if saved != wanted:
    raise ConfigMismatchError(
        f'{where} does not fit the optimiser of the config: its optimiser state has '
        f'{len(saved)} arrays, the config\'s {len(wanted)}, e.g. '
        f'{sorted(set(saved) ^ set(wanted))[:2] or "the same names with other shapes"} '
        '(another config.grad_clip_norm or optimiser?). Use another --workdir or the config '
        'it was trained with.')


def _set_aside(mngr: ocp.CheckpointManager, step: int) -> str:
  """Moves an unreadable step to <workdir>/checkpoints_unreadable/<step>.<time> (kept for a
  look, out of orbax's way, so that training can write that step again)."""
  source = epath.Path(mngr.directory) / str(step)
  target = (epath.Path(mngr.directory).parent / 'checkpoints_unreadable' /
            f'{step}.{int(time.time())}')
  if jax.process_index() == 0:  # One process moves it; the others wait for that.
    target.parent.mkdir(parents=True, exist_ok=True)
    source.rename(target)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f'seg2vid_jax: set aside checkpoint {step}')
  mngr.reload()
  return str(target)


def restore_latest(mngr: ocp.CheckpointManager, state, config):
  """The newest readable checkpoint restored into `state`'s structure and shardings, or
  `state` itself if there is none.

  Each step is first checked against the config (`check_fits`, an error). A step whose files
  cannot be read is named in a warning and the one before it is tried; once one is read, the
  unreadable newer ones are set aside (so that training can write those steps again). If none
  can be read, nothing is moved and `CheckpointError` names them.
  """
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  unreadable = []
  for step in sorted(mngr.all_steps(), reverse=True):
    where = f'checkpoint {epath.Path(mngr.directory) / str(step)}'
    try:
      saved_tree = mngr.item_metadata(step).tree
    except Exception as e:  # pylint: disable=broad-except
      logging.warning('%s is unreadable (%s); trying the one before.', where, e)
      unreadable.append(step)
      continue
    check_fits(saved_tree, state, where, config)
    try:
      restored = mngr.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # pylint: disable=broad-except
      logging.warning('%s is unreadable (%s); trying the one before.', where, e)
      unreadable.append(step)
      continue
    for bad in unreadable:
      logging.warning('Unreadable checkpoint step %d moved to %s.', bad, _set_aside(mngr, bad))
    logging.info('Resuming from %s.', where)
    return restored
  if unreadable:
    raise CheckpointError(f'none of the checkpoints in {mngr.directory} (steps {unreadable}) '
                          'can be read; see the warnings above. Nothing was moved or deleted.')
  return state


def restore_state(config, workdir: str):
  """(model, mesh, state) of the latest checkpoint of `workdir` for `config`'s task; an error
  if there is none. What `--mode=eval`, `--mode=generate` and stage 1 of generation use."""
  task = tasks.get_task(config)
  mesh = base.create_mesh()
  model = task.create_model(config)
  state = jax.device_put(task.create_state(config, model, jax.random.key(config.seed)),
                         base.replicated_sharding(mesh))
  mngr = manager(workdir, config)
  if not mngr.all_steps():
    raise FileNotFoundError(f'no checkpoint in {mngr.directory}: train first '
                            f'(python -m seg2vid_jax.main --config=... --workdir={workdir})')
  state = restore_latest(mngr, state, config)
  mngr.close()
  return model, mesh, state
