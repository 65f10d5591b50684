"""Data parallelism: 8 simulated devices give the one-device step; 2 processes (jax.distributed,
gloo) give the one-process losses. Each test runs its own subprocesses."""

import os
import pickle
import signal
import subprocess
import sys

import jax
import numpy as np

from configs import test as test_config
from seg2vid_jax import input_pipeline, train
from seg2vid_jax.tasks import base, img2vid
from tests import conftest
from tests.test_train import REPO, config_with, read_scalars


def first_step(n):
  """BatchNorm statistics and loss terms of configs/test.py's first step on the first `n`
  devices (global-batch statistics over them), fetched to the host."""
  config = test_config.get_config()
  model = img2vid.create_model(config)
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:n]), ('data',))
  state = jax.device_put(img2vid.create_train_state(config, model, jax.random.key(0)),
                         base.replicated_sharding(mesh))
  sharding = input_pipeline.data_sharding(mesh.devices.ravel())
  batches = input_pipeline.create_train_iterator(config, 0, sharding)
  state, terms = train.make_train_step(config, mesh, state)(state, next(batches), None)
  return jax.device_get((state.batch_stats, terms))


# The 8-device step in a process of its own (8 simulated devices); the 1-device step runs in
# the test's process, whose XLA flags are the rest of the suite's (its compilation is shared).
SHARDED_SCRIPT = '''
import pickle, sys, jax
from tests.test_distributed import first_step
assert jax.device_count() == 8, jax.devices()
with open(sys.argv[1], 'wb') as f:
  pickle.dump(first_step(8), f)
'''


def test_sharded_step_on_8_devices_equals_single_device_step(tmp_path):
  """One step: every loss term, the gradient norm and the BatchNorm statistics agree up to
  float reordering. (After that, Adam's first update, about lr·sign(g), turns reordering
  noise in near-zero gradients into differences of lr.)"""
  flags = conftest.subprocess_xla_flags('--xla_force_host_platform_device_count=8')
  env = dict(os.environ, XLA_FLAGS=flags)
  path = str(tmp_path / 'step8.pkl')
  result = subprocess.run([sys.executable, '-c', SHARDED_SCRIPT, path], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  with open(path, 'rb') as f:
    s8, t8 = pickle.load(f)
  s1, t1 = first_step(1)
  assert set(t8) == set(t1)
  for k in t1:
    # The gradient norm sums 240k squares reduced in another order: 2e-4 measured.
    np.testing.assert_allclose(t8[k], t1[k], rtol=1e-3 if k == 'grad_norm' else 1e-5,
                               err_msg=k)
  diff = max(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(s8),
                                                         jax.tree.leaves(s1)))
  assert diff < 1e-5, diff


def pid_of(*words):
  """The pid of the one process whose command line contains all of `words` (Linux /proc)."""
  pids = []
  for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
      with open(f'/proc/{pid}/cmdline', 'rb') as f:
        argv = f.read().decode(errors='replace').split('\0')
    except OSError:
      continue
    if all(w in argv for w in words):
      pids.append(int(pid))
  assert len(pids) == 1, (words, pids)
  return pids[0]


def test_two_processes_match_one_process_and_stop_together_when_one_is_preempted(tmp_path):
  """launch/local_multiprocess.sh: jax.distributed on localhost with gloo, 2 processes x 4
  clips, gives the losses of 1 process x 8 clips. After step 2 process 1 alone gets SIGTERM:
  both processes checkpoint the same step (JAX's preemption sync point) and exit cleanly."""
  one_dir = str(tmp_path / 'one')
  train.train_and_evaluate(config_with(num_train_steps=2, log_every_steps=1, num_eval_clips=0),
                           one_dir)
  multi = str(tmp_path / 'multi')
  proc = subprocess.Popen(
      ['bash', 'launch/local_multiprocess.sh', '-n', '2', '-c', 'configs/test.py', '-w', multi,
       '--python', sys.executable, '--', '--config.num_train_steps=100000',
       '--config.checkpoint_every_steps=100000', '--config.log_every_steps=1',
       '--config.eval_every_steps=0', '--config.sample_every_steps=0',
       '--config.num_eval_clips=0'], cwd=REPO, stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True, env=dict(os.environ, CUDA_VISIBLE_DEVICES=''))
  output = []
  for line in proc.stdout:
    output.append(line)
    if line.startswith('[process 0] ') and '] [2] train/' in line:  # Step 2's losses.
      os.kill(pid_of(f'--workdir={multi}', '--process_id=1'), signal.SIGTERM)
      break
  rest, _ = proc.communicate(timeout=600)
  output = ''.join(output) + rest
  assert proc.returncode == 0, output[-4000:]
  assert '[process 0]' in output and 'jax.distributed: process 1 of 2' in output
  steps = [int(s) for s in os.listdir(os.path.join(multi, 'checkpoints'))]
  assert len(steps) == 1 and 2 < steps[0] < 100000, steps
  for i in range(2):
    assert f'[process {i}] ' in output
    assert any(line.startswith(f'[process {i}] ') and
               f'Preempted: checkpoint saved at step {steps[0]}' in line
               for line in output.splitlines()), output[-4000:]
  one = read_scalars(one_dir, 'train/total')
  two = read_scalars(multi, 'train/total')
  np.testing.assert_allclose(two[1], one[1], rtol=1e-5)
  np.testing.assert_allclose(two[2], one[2], rtol=1e-3)  # See the sharded test on Adam.
