"""A tiny stage-1 configuration for the tests.

  python -m seg2vid_jax.main --config=configs/test_img2img.py --workdir=/tmp/seg2vid_img2img
"""

from configs import test
from configs.synthetic_img2img import img2img_fields


def get_config():
  """A very narrow pix2pixHD for a few steps."""
  config = test.get_config()
  config.task = 'img2img'  # Stage 1.
  config.num_frames = 2  # Only frame 0 is used.
  config.img2img = img2img_fields(ngf=4, n_downsampling=2, n_blocks=1, num_D=1, ndf=4,
                                  n_layers=1)
  config.img2img_loss_weights = None  # Overrides of losses/img2img.py WEIGHTS.
  return config
