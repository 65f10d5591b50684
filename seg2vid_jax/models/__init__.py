"""Flax Linen models of seg2vid."""

from seg2vid_jax.models.img2vid import Img2Vid, example_inputs, init_variables
from seg2vid_jax.models.vgg import VGG19Features

__all__ = ['Img2Vid', 'VGG19Features', 'example_inputs', 'init_variables']
