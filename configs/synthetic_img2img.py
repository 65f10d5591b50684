"""Stage 1 on the synthetic street scenes: label map -> first frame, a narrow pix2pixHD, 64x64.

Trains in about 10 minutes on 2 CPU cores:

  python -m seg2vid_jax.main --config=configs/synthetic_img2img.py \
      --workdir=workdirs/synthetic_img2img
"""

import ml_collections

from configs import synthetic


def img2img_fields(ngf, n_downsampling, n_blocks, num_D, ndf, n_layers):  # pylint: disable=invalid-name
  """The `config.img2img` group: pix2pixHD sizes and its optimiser."""
  c = ml_collections.ConfigDict()
  c.ngf = ngf  # Width of the generator's first convolution (published 64).
  c.n_downsampling = n_downsampling  # Stride-2 stages of the generator (published 4).
  c.n_blocks = n_blocks  # Residual blocks at the lowest resolution (published 9).
  c.num_D = num_D  # Discriminator scales (published 3).
  c.ndf = ndf  # Width of each discriminator's first convolution (published 64).
  c.n_layers = n_layers  # Stride-2 layers per discriminator (published 3).
  c.learning_rate = 2e-4  # Adam, beta1 0.5, both networks (pix2pixHD).
  return c


def get_config():
  """Synthetic clips, first frames only; a generator and 2 discriminators for CPUs."""
  config = synthetic.get_config('published')  # Its data, model sizes and seed 0.
  config.task = 'img2img'  # Stage 1: the shared trainer runs the GAN step.
  config.num_frames = 2  # Only frame 0 is used (the shortest clip the pipeline makes).
  config.img2img = img2img_fields(ngf=16, n_downsampling=3, n_blocks=3, num_D=2, ndf=16,
                                  n_layers=2)
  config.img2img_loss_weights = None  # Overrides of losses/img2img.py WEIGHTS, e.g. {'vgg': 0}.
  config.batch_size = 8  # First frames per step.
  config.num_train_steps = 600
  config.sample_every_steps = 200
  return config
