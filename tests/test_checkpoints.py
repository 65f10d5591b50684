"""Checkpoints under faults: a process SIGKILLed while writing one, a truncated or half-deleted
latest checkpoint, a full disk, an unwritable workdir, and a workdir of another config."""

import errno
import glob
import logging
import os
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from seg2vid_jax import checkpoints
from seg2vid_jax import train
from tests.test_train import REPO, config_with, read_scalars

STEPS = 3


def fault_config(**overrides):
  """configs/test.py, a checkpoint every step, every step's losses logged, no evaluation."""
  return config_with(**{**dict(num_train_steps=STEPS, checkpoint_every_steps=1,
                               log_every_steps=1, sample_every_steps=0, num_eval_clips=0),
                        **overrides})


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """An uninterrupted run: its workdir and final state."""
  workdir = str(tmp_path_factory.mktemp('reference'))
  return workdir, jax.device_get(train.train_and_evaluate(fault_config(), workdir))


# Trains configs/test.py like `fault_config` and SIGKILLs itself inside orbax's save, at the
# n-th call of: 'finalize' (before a temporary directory is committed) or 'renamed' (just
# after one is renamed to its final name). Each save makes two
# (the item 'default' inside the step), so the calls of save k are 2k - 1 and 2k.
KILL_SCRIPT = '''
import os, signal, sys
from orbax.checkpoint._src.path import async_path, atomicity
from tests.test_checkpoints import fault_config
from seg2vid_jax import train

point, nth, workdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
calls = {'n': 0}

def kill_on_nth():
  calls['n'] += 1
  if calls['n'] == nth:
    print('KILLING at', point, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

def wrap(cls, name, after=False):
  original = getattr(cls, name)
  async def patched(*args, **kwargs):
    if not after:
      kill_on_nth()
    result = await original(*args, **kwargs)
    if after:
      kill_on_nth()
    return result
  setattr(cls, name, patched)

if point == 'finalize':
  wrap(atomicity.AtomicRenameTemporaryPath, 'finalize')
else:
  wrap(async_path, 'rename', after=True)
train.train_and_evaluate(fault_config(), workdir)
'''


def run_killed(workdir, point, nth):
  """Runs KILL_SCRIPT and checks that it died of SIGKILL where it should."""
  proc = subprocess.run([sys.executable, '-c', KILL_SCRIPT, point, str(nth), workdir], cwd=REPO,
                        env=dict(os.environ, PYTHONPATH=REPO), capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
  assert f'KILLING at {point}' in proc.stdout


def steps_on_disk(workdir):
  """The committed checkpoint steps and the temporary (uncommitted) directories."""
  names = os.listdir(os.path.join(workdir, 'checkpoints'))
  return (sorted(int(n) for n in names if n.isdigit()),
          sorted(n for n in names if not n.isdigit()))


def test_sigkill_while_writing_a_checkpoint_resumes_from_the_last_complete_one(reference,
                                                                               tmp_path):
  ref_dir, ref_state = reference
  workdir = str(tmp_path / 'killed')
  # 1. Killed when step 2's arrays are written but not committed: step 1 is the latest.
  run_killed(workdir, 'finalize', 3)
  committed, temporary = steps_on_disk(workdir)
  assert committed == [1] and temporary and temporary[0].startswith('2.')
  # 2. Resumed from step 1 (step 2's leftover temporary directory cleaned away), killed just
  # after step 2 was committed.
  run_killed(workdir, 'renamed', 2)
  assert steps_on_disk(workdir) == ([1, 2], [])
  # 3. Resumed from step 2 to the end: the losses and parameters of the uninterrupted run.
  state = jax.device_get(train.train_and_evaluate(fault_config(), workdir))
  assert int(state.step) == STEPS
  assert read_scalars(workdir, 'train/total')[STEPS] == read_scalars(ref_dir,
                                                                    'train/total')[STEPS]
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref_state.params)):
    np.testing.assert_array_equal(a, b)


def truncate_arrays(step_dir):
  """Cuts every array data file of a checkpoint step to half its size."""
  files = [p for p in glob.glob(os.path.join(step_dir, '**', 'd', '*'), recursive=True)
           if os.path.isfile(p)]
  assert files
  for path in files:
    with open(path, 'r+b') as f:
      f.truncate(os.path.getsize(path) // 2)


@pytest.mark.parametrize('damage', ['truncated', 'half_deleted'])
def test_an_unreadable_latest_checkpoint_is_named_and_the_one_before_is_used(
    reference, tmp_path, caplog, damage):
  workdir = str(tmp_path / damage)
  shutil.copytree(reference[0], workdir)
  latest = os.path.join(workdir, 'checkpoints', str(STEPS))
  if damage == 'truncated':
    truncate_arrays(latest)
  else:
    shutil.rmtree(os.path.join(latest, 'default'))
  with caplog.at_level(logging.WARNING):
    _, _, state = train.restore_state(fault_config(), workdir)
  assert int(state.step) == STEPS - 1
  assert f'checkpoint {latest} is unreadable' in caplog.text
  # The damaged step is kept aside, out of the way of the training that writes it again.
  assert os.listdir(os.path.join(workdir, 'checkpoints_unreadable'))[0].startswith(f'{STEPS}.')
  assert steps_on_disk(workdir)[0] == list(range(1, STEPS))


def test_no_readable_checkpoint_is_an_error_that_moves_nothing(reference, tmp_path):
  workdir = str(tmp_path / 'all_bad')
  shutil.copytree(reference[0], workdir)
  for step_dir in glob.glob(os.path.join(workdir, 'checkpoints', '[0-9]*')):
    truncate_arrays(step_dir)
  with pytest.raises(checkpoints.CheckpointError, match=r'none of the checkpoints in .* can be '
                                                         r'read'):
    train.train_and_evaluate(fault_config(), workdir)
  assert steps_on_disk(workdir)[0] == [1, 2, 3]


def test_a_full_disk_stops_with_the_path_and_keeps_the_earlier_checkpoints(
    reference, tmp_path, monkeypatch):
  """`checkpoints.save`, which the loop calls and whose error stops it, on a disk that fills
  up while the next step is committed."""
  from orbax.checkpoint._src.path import atomicity  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / 'full')
  shutil.copytree(reference[0], workdir)
  _, _, state = train.restore_state(fault_config(), workdir)

  async def finalize(self):
    raise OSError(errno.ENOSPC, 'No space left on device')
  monkeypatch.setattr(atomicity.AtomicRenameTemporaryPath, 'finalize', finalize)
  manager = checkpoints.manager(workdir, fault_config())
  with pytest.raises(checkpoints.CheckpointWriteError,
                     match=rf'cannot write checkpoint step {STEPS + 1} to {workdir}/checkpoints: '
                           r'.*No space left on device.*steps \[1, 2, 3\]\) are kept'):
    checkpoints.save(manager, state, STEPS + 1)
  monkeypatch.undo()
  assert steps_on_disk(workdir)[0] == [1, 2, 3]
  _, _, state = train.restore_state(fault_config(), workdir)
  assert int(state.step) == STEPS


def test_an_unwritable_workdir_stops_before_training_naming_the_path(tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('not a directory')
  workdir = str(blocker / 'workdir')
  with pytest.raises(checkpoints.CheckpointWriteError, match=f'cannot write to {workdir}'):
    train.train_and_evaluate(fault_config(), workdir)


def test_a_checkpoint_of_another_config_stops_before_any_step_naming_both(reference, tmp_path):
  workdir = str(tmp_path / 'other')
  shutil.copytree(reference[0], workdir)
  events = sorted(glob.glob(os.path.join(workdir, 'events.out.tfevents.*')))
  wider = fault_config(num_train_steps=STEPS + 2)
  wider.model.encoder_widths = (8, 8, 8, 16)
  with pytest.raises(checkpoints.ConfigMismatchError,
                     match=rf'checkpoints/{STEPS} does not fit config.task=.img2vid. \(img2vid w_mask, '
                           r'image_size \(64, 64\)\): \d+ parameters differ, e\.g\. [a-z_/0-9]+: '
                           r'checkpoint \(\d+,\), config \(\d+,\)'):
    train.train_and_evaluate(wider, workdir)
  clipped = fault_config(num_train_steps=STEPS + 2, grad_clip_norm=1.0)
  with pytest.raises(checkpoints.ConfigMismatchError,
                     match=rf'checkpoints/{STEPS} does not fit the optimiser of the config: its '
                           r'optimiser state has \d+ arrays, the config.s \d+, e\.g\. \[.*'
                           r'grad_clip_norm'):
    train.train_and_evaluate(clipped, workdir)
  from configs import test_img2img  # pylint: disable=g-import-not-at-top
  stage1 = test_img2img.get_config()
  with pytest.raises(checkpoints.ConfigMismatchError,
                     match=r"holds the fields \[.*'batch_stats'.*\], while config.task='img2img' "
                           r"\(img2img .*\) has \[.*'disc_params'.*\] \(a checkpoint of another "
                           r'task\?\)'):
    train.restore_state(stage1, workdir)
  assert steps_on_disk(workdir)[0] == [1, 2, 3]  # Nothing ran, nothing was written.
  assert sorted(glob.glob(os.path.join(workdir, 'events.out.tfevents.*')))[:len(events)] == events
  assert max(read_scalars(workdir, 'train/total')) == STEPS
