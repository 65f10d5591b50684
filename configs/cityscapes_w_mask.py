"""Published seg2vid with one 20-channel motion encoder (CVPR model), Cityscapes 128x256.

  python -m seg2vid_jax.main --config=configs/cityscapes_w_mask.py --workdir=$WORKDIR \
      --config.manual_dir=/data/cityscapes --config.vgg_weights=vgg19_features.npz
"""

from configs import default


def get_config():
  """The CVPR 'w_mask' model: no background/foreground split, batch 16 as published."""
  config = default.get_config()
  config.two_path = False  # One motion encoder over all 20 label channels.
  config.batch_size = 16  # Published batch of this variant.
  return config
