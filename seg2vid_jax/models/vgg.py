"""The frozen VGG19 feature extractor of seg2vid's perceptual loss.

ImageNet-normalised input through the VGG19 convolutions up to relu4_4, with 2x2 *average*
pooling in place of max pooling (as the authors' ``my_vgg``); the 12 ReLU outputs relu1_1 ...
relu4_4 are the features. Parameter names follow torchvision (``features_0`` for
``features.0``), so torchvision and seg2vid checkpoints load by name.
"""

import flax.linen as nn
import jax.numpy as jnp

from seg2vid_jax.ops import conv as conv_ops

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# (torchvision features index, output channels) of the convolutions used, grouped by block.
BLOCKS = (((0, 64), (2, 64)), ((5, 128), (7, 128)),
          ((10, 256), (12, 256), (14, 256), (16, 256)),
          ((19, 512), (21, 512), (23, 512), (25, 512)))


class VGG19Features(nn.Module):
  """Images (N, H, W, 3) in [0, 1] -> the 12 feature maps relu1_1 ... relu4_4."""

  @nn.compact
  def __call__(self, images):
    x = (images - jnp.array(IMAGENET_MEAN)) / jnp.array(IMAGENET_STD)
    features = []
    for i, block in enumerate(BLOCKS):
      if i:
        x = nn.avg_pool(x, (2, 2), (2, 2))
      for index, width in block:
        x = nn.relu(nn.Conv(width, (3, 3), padding=[(1, 1), (1, 1)], name=f'features_{index}',
                            conv_general_dilated=conv_ops.conv_general_dilated)(x))
        features.append(x)
    return features
