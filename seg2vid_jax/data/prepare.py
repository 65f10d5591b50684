r"""Prepares one of the seg2vid TFDS datasets (the `tfds build` CLI needs apache-beam).

    python -m seg2vid_jax.data.prepare --dataset=seg2vid_cityscapes/gtfine_128x256_t5 \
        --manual_dir=/data/cityscapes [--data_dir=~/tensorflow_datasets] [--skip_bad_examples]
"""

import os

os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
import tensorflow as tf
import tensorflow_datasets as tfds

from seg2vid_jax.data import register_builders

_DATASET = flags.DEFINE_string('dataset', None, 'TFDS name/config, e.g. seg2vid_kth/walking_t10.',
                               required=True)
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data_dir (default: TFDS default).')
_MANUAL_DIR = flags.DEFINE_string('manual_dir', None, 'Folder of the downloaded files.')
_SKIP = flags.DEFINE_boolean('skip_bad_examples', False,
                             'Drop (and log) bad clips instead of stopping.')


def main(argv):
  del argv
  tf.config.set_visible_devices([], 'GPU')
  register_builders()
  builder = tfds.builder(_DATASET.value, data_dir=_DATA_DIR.value,
                         skip_bad_examples=_SKIP.value)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=_MANUAL_DIR.value))
  print(f'{_DATASET.value}: {builder.info.splits} in {builder.data_dir}')


if __name__ == '__main__':
  app.run(main)
