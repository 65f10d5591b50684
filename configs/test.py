"""A tiny configuration for the tests: 64x64 clips of 3 frames, very narrow layers.

  python -m seg2vid_jax.main --config=configs/test.py --workdir=/tmp/seg2vid_test
"""

from configs import synthetic


def get_config():
  """A few steps of a very narrow model on synthetic data (compiles and runs in seconds)."""
  config = synthetic.get_config('published')
  config.num_frames = 3  # K = 2 predicted frames.
  config.batch_size = 8  # Divides over 8 simulated devices.
  config.two_path = False
  config.flip = True
  config.num_eval_clips = 8
  config.model.encoder_widths = (4, 8, 8, 16)
  config.model.motion_widths = (4, 4, 4, 8, 8)
  config.model.code_channels = 4
  config.model.head_width = 4
  config.model.refine_widths = (4, 8, 8, 8)
  config.model.refine_bottleneck = 8
  config.num_train_steps = 4
  config.log_every_steps = 2
  config.checkpoint_every_steps = 2
  config.sample_every_steps = 4
  config.num_sample_clips = 2
  config.num_prior_samples = 2
  config.progress_bar = False
  return config
