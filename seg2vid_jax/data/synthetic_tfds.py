"""TFDS builder `seg2vid_synthetic`: `synthetic.make_clip` clips written to disk, with flow.

Everything is generated locally (no download). Clip i of split s comes from
``make_clip((config.seed, SPLIT_CODES[s], i), ...)``, so a config always gives the same data.

    python -m seg2vid_jax.data.prepare --dataset=seg2vid_synthetic/64x64_t5

or in Python, with any size, for tests::

    config = SyntheticConfig(name='tiny', height=32, width=32, num_frames=3,
                             num_clips={'train': 4, 'validation': 2, 'test': 2})
    builder = SyntheticVideo(config=config, data_dir=tmp)
    builder.download_and_prepare()
"""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from seg2vid_jax.data import common
from seg2vid_jax.data import synthetic

SPLIT_CODES = {'train': 0, 'validation': 1, 'test': 2}


@dataclasses.dataclass
class SyntheticConfig(tfds.core.BuilderConfig):
  """Frame size, clip length, clips per split and seed of a synthetic dataset."""
  height: int = 128
  width: int = 256
  num_frames: int = 5
  num_clips: dict = dataclasses.field(
      default_factory=lambda: {'train': 500, 'validation': 50, 'test': 50})
  seed: int = 0


class SyntheticVideo(tfds.core.GeneratorBasedBuilder):
  """Synthetic street clips with Cityscapes train ids, exact flow and validity masks."""

  name = 'seg2vid_synthetic'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First version.'}
  BUILDER_CONFIGS = [
      # About 0.6 MB per clip at 128x256 and 0.05 MB at 64x64.
      SyntheticConfig(name='128x256_t5', description='Cityscapes-sized frames, 5 per clip.'),
      SyntheticConfig(name='64x64_t5', height=64, width=64,
                      num_clips={'train': 4000, 'validation': 200, 'test': 200},
                      description='Small frames for the demo, 5 per clip.'),
  ]

  def __init__(self, *, skip_bad_examples=False, **kwargs):
    """`skip_bad_examples` is accepted like the other builders'; generated clips are never bad."""
    super().__init__(**kwargs)
    del skip_bad_examples

  def _info(self):
    c = self.builder_config
    t, h, w = c.num_frames, c.height, c.width
    return self.dataset_info_from_configs(
        description=__doc__.splitlines()[0],
        features=tfds.features.FeaturesDict({
            'video': common.video_feature(t, h, w),
            'label': tfds.features.Image(shape=(h, w, 1)),  # Frame-0 train ids.
            'labels': tfds.features.Video((t, h, w, 1)),  # Train ids of every frame.
            # Flow from frame 0 to frame t (t >= 1), normalised units, x first. float16 (rounding
            # error < 0.001 of the image size, ~0.03 px at 256) compresses 10x with zlib.
            'flow': tfds.features.Tensor(shape=(t - 1, h, w, 2), dtype=np.float16,
                                         encoding=tfds.features.Encoding.ZLIB),
            'valid': tfds.features.Tensor(shape=(t - 1, h, w), dtype=np.bool_,
                                          encoding=tfds.features.Encoding.ZLIB),
            'clip_id': tfds.features.Text(),
        }),
        supervised_keys=None,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    c = self.builder_config
    unknown = set(c.num_clips) - set(SPLIT_CODES)
    if unknown:
      raise ValueError(f'{self.name}/{c.name}: unknown splits {sorted(unknown)} in num_clips; '
                       f'expected a subset of {sorted(SPLIT_CODES)}')
    empty = [s for s, n in c.num_clips.items() if n <= 0]
    if empty:
      raise ValueError(f'{self.name}/{c.name}: splits {empty} would be empty; give them at least '
                       'one clip in num_clips')
    return {split: self._generate_examples(split, n) for split, n in c.num_clips.items()}

  def _generate_examples(self, split, num_clips):
    c = self.builder_config
    if c.num_frames < 2:
      raise ValueError(f'{self.name}/{c.name}: num_frames={c.num_frames}; flow needs at least 2')
    for i in range(num_clips):
      clip = synthetic.make_clip((c.seed, SPLIT_CODES[split], i), c.height, c.width,
                                 c.num_frames)
      labels = clip['labels'].astype(np.uint8)[..., None]
      key = f'{split}_{i:06d}'
      yield key, {
          'video': clip['video'],
          'label': labels[0],
          'labels': labels,
          'flow': clip['flow'].astype(np.float16),
          'valid': clip['valid'],
          'clip_id': key,
      }
