"""TFDS builder `seg2vid_video_folder`: bring your own clips, one folder of frames per clip.

Layout in `manual_dir` (for instance UCF-101 after extracting frames with ffmpeg):

    <manual_dir>/<split>/<clip>/<frame files>   frames: .png/.jpg/.jpeg/.bmp, in natural order
                                                (frame2 before frame10); any names
    <manual_dir>/<split>/<clip>/label.png       optional label map of the clip's first frame:
                                                single-channel train ids 0..19, 255 = ignore

<split> is any of train, validation, test (at least train). A folder with more than T frames
gives clips every `clip_stride` frames (0: only the first T frames); with labels only the first
clip of a folder is used, since the label map belongs to its first frame. Frames are resized to
the config's (height, width) (no crop), label maps with nearest neighbour.

A config with `with_labels=True` needs a label.png in every clip folder. Build one for your own
size in Python::

    config = VideoFolderConfig(name='ucf_64x64_t8', height=64, width=64, num_frames=8)
    builder = VideoFolder(config=config, data_dir=data_dir)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir='/path/to/frames'))
"""

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

from seg2vid_jax.data import common

SPLITS = ('train', 'validation', 'test')
LABEL_FILE = 'label.png'
FRAME_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp')


@dataclasses.dataclass
class VideoFolderConfig(tfds.core.BuilderConfig):
  """Frame size, clip length, label maps and clip spacing."""
  height: int = 64
  width: int = 64
  num_frames: int = 8
  with_labels: bool = False
  clip_stride: int = 0  # Frames between clip starts in a folder (no labels); 0: one clip.


class VideoFolder(tfds.core.GeneratorBasedBuilder):
  """Clips from folders of frames, optionally with a first-frame label map."""

  name = 'seg2vid_video_folder'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First version.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Put one folder of frames per clip under manual_dir/<split>/ (split: train, validation, test),
  optionally with a label.png (train ids, 255 = ignore) of the first frame in each folder.
  """
  BUILDER_CONFIGS = [
      VideoFolderConfig(name='64x64_t8', description='64x64 frames, 8 per clip, no labels.'),
      VideoFolderConfig(name='128x128_t8', height=128, width=128,
                        description='128x128 frames, 8 per clip, no labels.'),
      VideoFolderConfig(name='labels_128x256_t5', height=128, width=256, num_frames=5,
                        with_labels=True, description='128x256, 5 frames, with label maps.'),
  ]

  def __init__(self, *, skip_bad_examples=False, **kwargs):
    """`skip_bad_examples`: drop bad clips (and log them) instead of stopping."""
    super().__init__(**kwargs)
    self.skip_bad_examples = skip_bad_examples

  def _info(self):
    c = self.builder_config
    features = {
        'video': common.video_feature(c.num_frames, c.height, c.width),
        'clip_id': tfds.features.Text(),
    }
    if c.with_labels:
      features['label'] = tfds.features.Image(shape=(c.height, c.width, 1))
    return self.dataset_info_from_configs(
        description=__doc__.splitlines()[0], features=tfds.features.FeaturesDict(features))

  def _split_generators(self, dl_manager):
    root = dl_manager.manual_dir
    present = [s for s in SPLITS if os.path.isdir(os.path.join(root, s))]
    if 'train' not in present:
      raise common.BadInputError(
          f'{self.name}: {os.path.join(root, "train")} does not exist; expected '
          f'<manual_dir>/<split>/<clip>/<frames> with split in {SPLITS}', 'missing split')
    generators = {}
    for split in present:
      split_dir = os.path.join(root, split)
      folders = sorted((d for d in os.listdir(split_dir)
                        if os.path.isdir(os.path.join(split_dir, d))), key=common.natural_key)
      if not folders:
        raise common.BadInputError(f'{self.name}: {split_dir} has no clip folder (empty split)',
                                   'empty split')
      generators[split] = self._generate_examples(split_dir, folders, f'{self.name} {split}')
    return generators

  def _clips(self, split_dir, folder):
    """The (key, (frame paths, label path, key)) clips of one folder; raises if it is too short."""
    c = self.builder_config
    path = os.path.join(split_dir, folder)
    frames = sorted((f for f in os.listdir(path)
                     if f.lower().endswith(FRAME_EXTENSIONS) and f != LABEL_FILE),
                    key=common.natural_key)
    if len(frames) < c.num_frames:
      raise common.BadInputError(f'{path}: {len(frames)} frames, shorter than a clip of '
                                 f'{c.num_frames}', 'clip shorter than num_frames')
    label = os.path.join(path, LABEL_FILE) if c.with_labels else None
    if c.with_labels or not c.clip_stride:
      starts = [0]
    else:
      starts = range(0, len(frames) - c.num_frames + 1, c.clip_stride)
    clips = []
    for s in starts:
      key = f'{folder}_{s:05d}'
      clips.append((key, ([os.path.join(path, f) for f in frames[s:s + c.num_frames]], label,
                          key)))
    return clips

  def _generate_examples(self, split_dir, folders, what):
    clips = []
    log = common.SkipLog(what)
    for folder in folders:
      try:
        clips.extend(self._clips(split_dir, folder))
      except common.BadInputError as e:
        if not self.skip_bad_examples:
          raise
        log.skip(folder, e)
    if log.total:
      log.report(len(clips))
    return common.generate_checked(clips, self._load_clip, self.skip_bad_examples, what)

  def _load_clip(self, clip):
    c = self.builder_config
    paths, label_path, key = clip
    size = (c.height, c.width)
    example = {'video': np.stack([common.read_image(p, size, 'RGB') for p in paths]),
               'clip_id': key}
    if label_path is not None:
      example['label'] = common.read_label(label_path, size)[..., None]
    return example
