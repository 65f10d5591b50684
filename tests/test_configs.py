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
