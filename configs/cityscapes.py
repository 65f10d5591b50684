"""Published two-path seg2vid on Cityscapes sequences, 128x256, clips of 5, batch 8.

Prepare the data (README, "Data"), convert VGG19 weights once, then:

  python -m seg2vid_jax.main --config=configs/cityscapes.py --workdir=$WORKDIR \
      --config.manual_dir=/data/cityscapes --config.vgg_weights=vgg19_features.npz
"""

from configs import default


def get_config():
  """The published configuration: `configs/default.py` as it is."""
  return default.get_config()
