"""The CPU demo: a narrow seg2vid on the built-in synthetic street scenes, 64x64.

Trains in about 10 minutes on 2 CPU cores (`make demo` runs it, then evaluates and generates):

  python -m seg2vid_jax.main --config=configs/synthetic.py --workdir=workdirs/synthetic
"""

from configs import default


def get_config():
  """Synthetic data generated on the fly; a model small enough for a laptop CPU."""
  config = default.get_config()
  config.dataset = 'synthetic'  # Generated on the fly by seg2vid_jax.data.synthetic.
  config.image_size = (64, 64)  # Small frames: the refinement U-Net gets 4 levels.
  config.batch_size = 4  # Clips per step (1 to 2 steps/s on 2 cores).
  config.two_path = True  # Cars/people and the background move differently: two paths.
  config.num_eval_clips = 64  # Held-out synthetic clips evaluated.

  config.model.encoder_widths = (16, 32, 64, 128)
  config.model.motion_widths = (16, 32, 32, 64, 64)
  config.model.latent_channels = 16  # 4x4x16 latent map = one row of 256.
  config.model.z_dim = 256
  config.model.code_channels = 8
  config.model.head_width = 8
  config.model.refine_widths = (16, 32, 64, 64)
  config.model.refine_depths = (1, 1, 1, 1)
  config.model.refine_bottleneck = 64

  config.learning_rate = 1e-3  # The published Adam learning rate.
  config.num_train_steps = 800  # About 10 minutes on 2 cores, evaluation included.
  config.log_every_steps = 50
  config.checkpoint_every_steps = 400
  config.sample_every_steps = 200
  config.eval_every_steps = 0  # Evaluate once, at the end.
  config.num_prior_samples = 10  # Best of 10 prior samples, as issue 11 measures.
  return config
