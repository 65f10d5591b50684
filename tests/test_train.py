"""The trainer: train_and_evaluate, resume, non-finite losses, SIGTERM, sharding, multi-host."""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow as tf

from configs import test as test_config
from seg2vid_jax import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_scalars(workdir, tag):
  """{step: value} of a scalar summary written by clu in `workdir`."""
  values = {}
  for path in sorted(glob.glob(os.path.join(workdir, 'events.out.tfevents.*'))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == tag:
          values[event.step] = float(tf.make_ndarray(value.tensor))
  return values


def config_with(**overrides):
  config = test_config.get_config()
  for key, value in overrides.items():
    config[key] = value
  return config


def run_main(workdir, *flags, env=None, **popen):
  """`python -m seg2vid_jax.main` with the test config in a subprocess."""
  cmd = [sys.executable, '-m', 'seg2vid_jax.main', '--config=configs/test.py',
         f'--workdir={workdir}', *flags]
  return subprocess.Popen(cmd, cwd=REPO, env=dict(os.environ, **(env or {})),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
  """Four steps of configs/test.py in one go, every step's losses logged."""
  workdir = str(tmp_path_factory.mktemp('uninterrupted'))
  state = train.train_and_evaluate(config_with(log_every_steps=1), workdir)
  return workdir, jax.device_get(state)


@pytest.fixture(scope='module')
def two_steps(tmp_path_factory):
  """A workdir holding the checkpoint of step 2."""
  workdir = str(tmp_path_factory.mktemp('two_steps'))
  train.train_and_evaluate(config_with(num_train_steps=2, eval_every_steps=0), workdir)
  return workdir


def test_train_and_evaluate_writes_checkpoints_summaries_samples_and_eval(uninterrupted):
  workdir, state = uninterrupted
  assert int(state.step) == 4
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2', '4']
  losses = read_scalars(workdir, 'train/total')
  assert sorted(losses) == [1, 2, 3, 4]
  assert all(np.isfinite(v) and v > 0 for v in losses.values())
  assert read_scalars(workdir, 'train/learning_rate') == pytest.approx(
      {1: 1e-3, 2: 1e-3, 3: 1e-3, 4: 1e-3})
  with open(os.path.join(workdir, 'eval', 'step_4.json')) as f:
    results = json.load(f)
  for kind in ('posterior', 'prior_best_of_n', 'copy_first_frame'):
    assert 5 < results[f'psnr/{kind}/mean'] < 60
    assert 0 < results[f'ssim/{kind}/mean'] < 1
  # The synthetic scenes move: the zero-flow baseline is off by more than a pixel by frame 2.
  assert results['epe_px/zero_flow/frame_2'] > results['epe_px/zero_flow/frame_1'] > 0.3
  gif = os.path.join(workdir, 'samples', 'step_0000004.gif')
  import imageio.v3 as iio  # pylint: disable=g-import-not-at-top
  frames = iio.imread(gif, index=None)
  assert frames.shape[0] == 2 and frames.shape[2] > 2 * 64  # K frames, two clips side by side.


def test_resume_repeats_the_uninterrupted_losses(uninterrupted, two_steps, tmp_path):
  workdir, state = uninterrupted
  resumed_dir = str(tmp_path / 'resumed')
  shutil.copytree(two_steps, resumed_dir)
  resumed = jax.device_get(train.train_and_evaluate(config_with(log_every_steps=1),
                                                    resumed_dir))
  for step in (3, 4):
    assert read_scalars(resumed_dir, 'train/total')[step] == read_scalars(
        workdir, 'train/total')[step]
  for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(a, b)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(two_steps, tmp_path):
  workdir = str(tmp_path / 'nan')
  shutil.copytree(two_steps, workdir)
  config = config_with(loss_weights={'recon': float('nan')})
  with pytest.raises(train.NonFiniteLossError, match=r'step 3: .*total=nan'):
    train.train_and_evaluate(config, workdir)
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2']
  _, _, state = train.restore_state(config_with(), workdir)
  assert int(state.step) == 2


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
  workdir = str(tmp_path / 'preempted')
  proc = run_main(workdir, '--config.num_train_steps=100000', '--config.log_every_steps=1',
                  '--config.checkpoint_every_steps=100000', '--config.sample_every_steps=0')
  output = []
  for line in proc.stdout:
    output.append(line)
    if 'train/total' in line:  # A step has finished: preempt now.
      proc.send_signal(signal.SIGTERM)
      break
  rest, _ = proc.communicate(timeout=300)
  output.append(rest)
  assert proc.returncode == 0, ''.join(output)[-3000:]
  steps = [int(s) for s in os.listdir(os.path.join(workdir, 'checkpoints'))]
  assert len(steps) == 1 and 1 <= steps[0] < 100000
  assert f'Preempted: checkpoint saved at step {steps[0]}' in ''.join(output)


SHARDED_SCRIPT = '''
import jax, numpy as np
from configs import test as test_config
from seg2vid_jax import input_pipeline, train
assert jax.device_count() == 8, jax.devices()
config = test_config.get_config()
model = train.create_model(config)
results = {}
for n in (8, 1):
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:n]), ('data',))
  state = jax.device_put(train.create_train_state(config, model, jax.random.key(0)),
                         train.replicated_sharding(mesh))
  sharding = input_pipeline.data_sharding(mesh.devices.ravel())
  batches = input_pipeline.create_train_iterator(config, 0, sharding)
  step = train.make_train_step(config, mesh, state)
  state, terms = step(state, next(batches), None)
  results[n] = jax.device_get((state.batch_stats, terms))
# One step: every loss term, the gradient norm and the BatchNorm statistics (global-batch
# statistics on 8 devices) agree up to float reordering. (After that, Adam's first update,
# about lr·sign(g), turns reordering noise in near-zero gradients into differences of lr.)
(s8, t8), (s1, t1) = results[8], results[1]
for k in t1:
  # The gradient norm sums 240k squares reduced in another order: 2e-4 measured.
  np.testing.assert_allclose(t8[k], t1[k], rtol=1e-3 if k == 'grad_norm' else 1e-5, err_msg=k)
diff = max(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(s8), jax.tree.leaves(s1)))
assert diff < 1e-5, diff
print('max batch_stats difference', diff, 'total', t8['total'], t1['total'])
'''


def test_sharded_step_on_8_devices_equals_single_device_step():
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8')
  result = subprocess.run([sys.executable, '-c', SHARDED_SCRIPT], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  assert 'max batch_stats difference' in result.stdout


def test_two_processes_match_one_process(uninterrupted, tmp_path):
  """launch/local_multiprocess.sh: jax.distributed on localhost with gloo, 2 processes x 4
  clips, gives the losses of 1 process x 8 clips (the uninterrupted run's first steps)."""
  multi = str(tmp_path / 'multi')
  result = subprocess.run(
      ['bash', 'launch/local_multiprocess.sh', '-n', '2', '-c', 'configs/test.py', '-w', multi,
       '--python', sys.executable, '--', '--config.num_train_steps=2',
       '--config.log_every_steps=1', '--config.eval_every_steps=0',
       '--config.sample_every_steps=0'], cwd=REPO, capture_output=True, text=True,
      timeout=600, env=dict(os.environ, CUDA_VISIBLE_DEVICES=''))
  output = result.stdout + result.stderr
  assert result.returncode == 0, output[-4000:]
  assert '[process 0]' in output and 'jax.distributed: process 1 of 2' in output
  assert os.path.isdir(os.path.join(multi, 'checkpoints', '2'))
  one = read_scalars(uninterrupted[0], 'train/total')
  two = read_scalars(multi, 'train/total')
  assert sorted(two) == [1, 2]
  np.testing.assert_allclose(two[1], one[1], rtol=1e-5)
  np.testing.assert_allclose(two[2], one[2], rtol=1e-3)  # See the sharded test on Adam.


def test_optional_paths_override_from_the_command_line(tmp_path):
  """--config.vgg_weights=... parses (a None default would not) and a bad path is named."""
  proc = run_main(str(tmp_path / 'w'), '--config.vgg_weights=/nonexistent/vgg19.npz')
  output, _ = proc.communicate(timeout=300)
  assert proc.returncode != 0
  assert 'VGG weights file /nonexistent/vgg19.npz does not exist' in output
