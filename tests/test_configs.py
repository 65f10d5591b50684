"""Every config file loads, names a known task, and says in its docstring how to run it."""

import glob
import importlib
import os

import pytest

from seg2vid_jax import tasks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, 'configs', '*.py'))
               if not p.endswith('__init__.py'))


@pytest.mark.parametrize('name', NAMES)
def test_config_loads_and_documents_its_run_command(name):
  module = importlib.import_module(f'configs.{name}')
  config = module.get_config()
  tasks.get_task(config)
  assert config.num_train_steps > 0 and config.batch_size > 0
  if name != 'default':
    assert f'--config=configs/{name}.py' in module.__doc__, name


def test_synthetic_variants_demo_and_published():
  """configs/synthetic.py: the demo's objective by default, the published one as
  `configs/synthetic.py:published` (what the test and ablation configs build on)."""
  from configs import synthetic, test  # pylint: disable=g-import-not-at-top
  from seg2vid_jax import generate  # pylint: disable=g-import-not-at-top
  demo = generate.load_config_file(os.path.join(REPO, 'configs', 'synthetic.py'))
  published = generate.load_config_file(os.path.join(REPO, 'configs', 'synthetic.py:published'))
  assert published.loss_weights is None and published.kl_free_nats == 0.0
  assert (published.seed, published.model.flow_in_pixels) == (0, False)
  assert (published.lr_schedule, demo.lr_schedule) == ('constant', 'piecewise')
  assert dict(demo.loss_weights) == {
      'flow_supervised': 1.0, 'flow_supervised_objects': 0.15, 'mask': 1.0}
  assert demo.kl_warmup_steps == demo.num_train_steps and demo.model.flow_in_pixels
  assert demo.model.to_dict() != published.model.to_dict()
  assert test.get_config().loss_weights is None
  with pytest.raises(ValueError, match='synthetic.py:nope'):
    synthetic.get_config('nope')


def test_synthetic_long_is_the_demo_continued():
  """configs/synthetic_long.py: the demo's config but for its length and the step of its
  learning-rate decay (docs/ABLATION.md, LB8D); the KL ramp stays at the demo's 800 steps."""
  from configs import synthetic, synthetic_long  # pylint: disable=g-import-not-at-top
  demo, long = synthetic.get_config().to_dict(), synthetic_long.get_config().to_dict()
  length = ('num_train_steps', 'checkpoint_every_steps', 'sample_every_steps',
            'log_every_steps', 'lr_decay_boundaries')
  assert {k: v for k, v in long.items() if k not in length} == {
      k: v for k, v in demo.items() if k not in length}
  assert (long['num_train_steps'], long['kl_warmup_steps']) == (6_000, 800)
  assert (long['batch_size'], long['lr_schedule'], long['lr_decay_boundaries']) == (
      8, 'piecewise', (4_500,))
  assert (demo['lr_schedule'], demo['lr_decay_boundaries']) == ('piecewise', (600,))
