"""Data for seg2vid: synthetic street clips, TFDS builders and their shared helpers.

`synthetic.make_clip` needs only numpy. The TFDS builders (`synthetic_tfds`, `cityscapes`, `kth`,
`ucf101`, `video_folder`) import TensorFlow Datasets, so they are imported on demand with
`register_builders()`; importing this package stays light.
"""


def register_builders():
  """Imports the builder modules so that `tfds.builder('seg2vid_...')` finds them."""
  # pylint: disable=g-import-not-at-top,unused-import
  from seg2vid_jax.data import cityscapes
  from seg2vid_jax.data import kth
  from seg2vid_jax.data import synthetic_tfds
  from seg2vid_jax.data import ucf101
  from seg2vid_jax.data import video_folder
