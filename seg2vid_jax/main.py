"""seg2vid_jax entry point: train, evaluate or generate.

  python -m seg2vid_jax.main --config=configs/synthetic.py --workdir=workdirs/synthetic
  python -m seg2vid_jax.main --config=configs/synthetic.py --workdir=workdirs/synthetic \
      --mode=eval
  python -m seg2vid_jax.main --config=configs/synthetic.py --workdir=workdirs/synthetic \
      --mode=generate --label_map=labels.png --first_frame=frame.png --num_samples=4 \
      --output_dir=generated

On several processes (TPU pod, SLURM, or explicit --coordinator_address/--num_processes/
--process_id) it initialises `jax.distributed` first; a single process runs without it.
"""

import logging as pylogging
import os

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Training configuration file.',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Checkpoints, summaries, samples, eval JSON.')
_MODE = flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'generate'], 'What to run.')
_LABEL_MAP = flags.DEFINE_string('label_map', None, 'generate: label map PNG (train ids).')
_FIRST_FRAME = flags.DEFINE_string('first_frame', None, 'generate: first frame image; without '
                                   'it stage 1 draws it (config.img2img_workdir/_config).')
_NUM_FRAMES = flags.DEFINE_integer('num_frames', None, 'generate: frames per video; beyond K, '
                                   'stage 2 repeats from its last frame (long videos).')
_NUM_SAMPLES = flags.DEFINE_integer('num_samples', 4, 'generate: videos sampled from the prior.')
_OUTPUT_DIR = flags.DEFINE_string('output_dir', None, 'generate: where to write (default '
                                  '<workdir>/generated).')
_SEED = flags.DEFINE_integer('seed', 0, 'generate: seed of the prior samples.')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 for '
                                   'jax.distributed (auto-detected on TPU pods and SLURM).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Processes in the job.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process in the job.')


class _QuietLibraries(pylogging.Filter):
  """Drops the INFO chatter of orbax (a dozen lines per checkpoint); warnings pass."""

  def filter(self, record):
    return record.levelno >= pylogging.WARNING or '/orbax/' not in record.pathname


def initialize_distributed():
  """`jax.distributed.initialize()` where the job has several processes.

  Explicit flags win; otherwise TPU pods and SLURM jobs are detected by JAX itself. CPU-only
  jobs use gloo collectives.
  """
  import jax  # pylint: disable=g-import-not-at-top
  explicit = _COORDINATOR.value is not None
  multi_env = any(v in os.environ for v in ('SLURM_NTASKS', 'TPU_WORKER_HOSTNAMES',
                                            'MEGASCALE_COORDINATOR_ADDRESS'))
  if os.environ.get('SLURM_NTASKS') == '1' and not explicit:
    multi_env = False
  if not (explicit or multi_env):
    return
  if os.environ.get('JAX_PLATFORMS', '').startswith('cpu') or explicit:
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  if explicit:
    jax.distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  else:
    jax.distributed.initialize()
  logging.info('jax.distributed: process %d of %d, %d devices in all.', jax.process_index(),
               jax.process_count(), jax.device_count())


def main(argv):
  if len(argv) > 1:
    raise app.UsageError('Too many command-line arguments.')
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  logging.get_absl_handler().addFilter(_QuietLibraries())
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], 'GPU')  # tf.data only; the accelerators are JAX's.
  initialize_distributed()
  from seg2vid_jax import train  # pylint: disable=g-import-not-at-top
  config = _CONFIG.value
  if _MODE.value == 'train':
    train.train_and_evaluate(config, _WORKDIR.value)
  elif _MODE.value == 'eval':
    train.evaluate_checkpoint(config, _WORKDIR.value)
  else:
    from seg2vid_jax import generate  # pylint: disable=g-import-not-at-top
    generate.generate_from_files(config, _WORKDIR.value, _LABEL_MAP.value, _FIRST_FRAME.value,
                                 _NUM_SAMPLES.value, _OUTPUT_DIR.value, _SEED.value,
                                 _NUM_FRAMES.value)


if __name__ == '__main__':
  flags.mark_flags_as_required(['config', 'workdir'])
  app.run(main)
