"""Puts one of the authors' released PyTorch checkpoints into a workdir, as its step-0 checkpoint.

Then `--mode=generate` and `--mode=eval` (and fine-tuning with `--mode=train`) run on it like on
any checkpoint of ours. The config says which model the checkpoint must be; the converter reads
the architecture from the state_dict, and the two must agree:

  python -m seg2vid_jax.released --checkpoint=refine_w_mask_two_path.pth.tar \
      --variant=two_path --config=configs/cityscapes_released.py --workdir=$WORKDIR

Reading a `.pth.tar` needs PyTorch (`pip install torch`); nothing else here does.
"""

from absl import app
from absl import flags
import jax
from ml_collections import config_flags

from seg2vid_jax import checkpoints
from seg2vid_jax import convert
from seg2vid_jax.tasks import img2vid

# Model fields that the converter reads from the state_dict (the rest come from the config).
_CHECKED_FIELDS = ('num_predicted_frames', 'two_path', 'num_classes', 'channels',
                   'upconv_upsampling')


def import_checkpoint(source, variant: str, config, workdir: str):
  """Converts a released checkpoint (path or state_dict) and saves it in `workdir` at step 0.

  Stops, naming both, when the checkpoint's architecture is not the config's model, and when
  the workdir already has checkpoints (it would otherwise mix two runs). Returns the state.
  """
  model = img2vid.create_model(config)
  converted, variables = convert.from_torch(source, variant, model.image_size)
  wrong = {f: (getattr(converted, f), getattr(model, f)) for f in _CHECKED_FIELDS
           if getattr(converted, f) != getattr(model, f)}
  if converted.path_widths != model.path_widths:  # The split, also when left at its default.
    wrong['latent_split'] = tuple(tuple(m.path_widths.values()) for m in (converted, model))
  if wrong:
    raise ValueError('the checkpoint is not the config\'s model: ' + ', '.join(
        f'{f} is {c} in the checkpoint and {m} in the config' for f, (c, m) in wrong.items()))
  manager = checkpoints.manager(workdir, config)
  if manager.latest_step() is not None:
    raise FileExistsError(f'{manager.directory} already has checkpoints (latest step '
                          f'{manager.latest_step()}): import into an empty workdir')
  state = img2vid.create_train_state(config, model, jax.random.key(config.seed))
  state = state.replace(params=variables['params'], batch_stats=variables['batch_stats'])
  checkpoints.save(manager, state, 0)
  manager.close()
  return state


_CHECKPOINT = flags.DEFINE_string('checkpoint', None, 'The released .pth.tar (or .pth).')
_VARIANT = flags.DEFINE_enum('variant', None, list(convert.VARIANTS), 'Its model variant.')
_CONFIG = config_flags.DEFINE_config_file('config', None, 'The config of that model.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'An empty workdir to put the checkpoint in.')


def main(argv):
  del argv
  import_checkpoint(_CHECKPOINT.value, _VARIANT.value, _CONFIG.value, _WORKDIR.value)
  print(f'Imported {_CHECKPOINT.value} ({_VARIANT.value}) into {_WORKDIR.value} as step 0.')


if __name__ == '__main__':
  flags.mark_flags_as_required(['checkpoint', 'variant', 'config', 'workdir'])
  app.run(main)
