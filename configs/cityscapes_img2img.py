"""Stage 1 at the published pix2pixHD sizes on Cityscapes 128x256 (ngf 64, 4 downsamplings,
9 blocks, 3 discriminator scales):

  python -m seg2vid_jax.main --config=configs/cityscapes_img2img.py --workdir=$WORKDIR \
      --config.manual_dir=/data/cityscapes --config.vgg_weights=vgg19_features.npz
"""

from configs import default
from configs.synthetic_img2img import img2img_fields


def get_config():
  """pix2pixHD's published generator and discriminators, batch 8."""
  config = default.get_config()
  config.task = 'img2img'  # Stage 1.
  config.num_frames = 2  # Only frame 0 is used.
  config.img2img = img2img_fields(ngf=64, n_downsampling=4, n_blocks=9, num_D=3, ndf=64,
                                  n_layers=3)
  config.img2img_loss_weights = None  # Overrides of losses/img2img.py WEIGHTS.
  return config
