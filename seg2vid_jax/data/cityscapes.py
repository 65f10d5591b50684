"""TFDS builder `seg2vid_cityscapes`: clips of Cityscapes sequences with a frame-0 label map.

Reads the official extracted layout from `manual_dir` (nothing is downloaded):

    <manual_dir>/leftImg8bit_sequence/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <manual_dir>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png   (gtfine configs)
    <manual_dir>/ssmask/<split>/<city>/<city>_<seq>_<frame>_ssmask.png             (ssmask configs)

with <split> in train, val (-> TFDS 'validation') and optionally test. Two label sources, one per
builder config:

* gtfine: a clip starts at each annotated frame (the 20th of each 30-frame snippet) and runs for
  T frames; Cityscapes labelIds are mapped to train ids with the official table, and the
  ignored classes (255) to 19.
* ssmask: per-frame predicted maps (the seg2vid authors ran DeepLab on every frame and saved
  `<city>_<seq>_<frame>_ssmask.png` with train ids; 255 -> 19). A clip may start at any frame that
  has a map, every `clip_stride` frames of each snippet.

Frames are resized to the config's (height, width) while preparing (bilinear with antialiasing),
label maps with nearest neighbour.
"""

import collections
import dataclasses
import os
import re

import numpy as np
import tensorflow_datasets as tfds

from seg2vid_jax.data import common

_FRAME_RE = re.compile(r'^(?P<city>.+)_(?P<seq>\d{6})_(?P<frame>\d{6})_leftImg8bit\.png$')
_SPLITS = {'train': 'train', 'val': 'validation', 'test': 'test'}
_REQUIRED_SPLITS = ('train', 'val')


@dataclasses.dataclass
class CityscapesConfig(tfds.core.BuilderConfig):
  """Frame size, clip length and label source."""
  height: int = 128
  width: int = 256
  num_frames: int = 5
  labels: str = 'gtfine'  # 'gtfine' or 'ssmask'
  ssmask_dir: str = 'ssmask'  # Folder of predicted maps inside manual_dir (ssmask configs).
  clip_stride: int = 0  # ssmask: frames between clip starts; 0 means num_frames.


class Cityscapes(tfds.core.GeneratorBasedBuilder):
  """Cityscapes video clips (leftImg8bit_sequence) with the label map of their first frame."""

  name = 'seg2vid_cityscapes'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First version.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Download leftImg8bit_sequence_trainvaltest.zip and gtFine_trainvaltest.zip from
  https://www.cityscapes-dataset.com (registration needed) and extract both into manual_dir, so
  that it holds leftImg8bit_sequence/{train,val,test}/<city>/ and gtFine/{train,val,test}/<city>/.
  For the ssmask configs also put predicted per-frame maps in
  manual_dir/ssmask/{train,val}/<city>/<city>_<seq>_<frame>_ssmask.png (train ids, 255 = ignore).
  """
  BUILDER_CONFIGS = [
      CityscapesConfig(name='gtfine_128x256_t5', description='gtFine labels, 128x256, 5 frames.'),
      CityscapesConfig(name='ssmask_128x256_t5', labels='ssmask',
                       description='Predicted labels on every frame, 128x256, 5 frames.'),
      CityscapesConfig(name='gtfine_128x256_t10', num_frames=10,
                       description='gtFine labels, 128x256, 10 frames.'),
  ]

  def __init__(self, *, skip_bad_examples=False, **kwargs):
    """`skip_bad_examples`: drop clips with missing/corrupt/mislabelled files (and log them)."""
    super().__init__(**kwargs)
    self.skip_bad_examples = skip_bad_examples

  def _info(self):
    c = self.builder_config
    if c.labels not in ('gtfine', 'ssmask'):
      raise ValueError(f'{self.name}/{c.name}: labels={c.labels!r}; expected gtfine or ssmask')
    return self.dataset_info_from_configs(
        description=__doc__.splitlines()[0],
        features=tfds.features.FeaturesDict({
            'video': common.video_feature(c.num_frames, c.height, c.width),
            'label': tfds.features.Image(shape=(c.height, c.width, 1)),  # Frame-0 train ids.
            'clip_id': tfds.features.Text(),
        }),
        homepage='https://www.cityscapes-dataset.com',
    )

  def _split_generators(self, dl_manager):
    root = dl_manager.manual_dir
    generators = {}
    for folder, split in _SPLITS.items():
      frames_dir = os.path.join(root, 'leftImg8bit_sequence', folder)
      if not os.path.isdir(frames_dir):
        if folder in _REQUIRED_SPLITS:
          raise common.BadInputError(
              f'{self.name}: {frames_dir} does not exist; see MANUAL_DOWNLOAD_INSTRUCTIONS',
              'missing split')
        continue
      clips = self._find_clips(root, folder)
      if not clips:
        raise common.BadInputError(
            f'{self.name}: no clip found for split {folder!r} under {frames_dir} (and its label '
            f'folder); expected <city>/<city>_<seq>_<frame>_leftImg8bit.png files',
            'empty split')
      generators[split] = self._generate_examples(clips, f'{self.name} {split}')
    return generators

  def _label_path(self, root, folder, city, seq, frame):
    c = self.builder_config
    stem = f'{city}_{seq}_{frame}'
    if c.labels == 'gtfine':
      return os.path.join(root, 'gtFine', folder, city, f'{stem}_gtFine_labelIds.png')
    return os.path.join(root, c.ssmask_dir, folder, city, f'{stem}_ssmask.png')

  def _find_clips(self, root, folder):
    """Lists (key, clip) pairs: a clip is the T frame paths and the frame-0 label path.

    Frame paths are derived from the start frame (so a missing frame is reported when the clip is
    read, naming the file); label maps decide where clips start.
    """
    c = self.builder_config
    frames_dir = os.path.join(root, 'leftImg8bit_sequence', folder)
    snippets = collections.defaultdict(list)
    for city in sorted(os.listdir(frames_dir)):
      city_dir = os.path.join(frames_dir, city)
      if not os.path.isdir(city_dir):
        continue
      for name in os.listdir(city_dir):
        m = _FRAME_RE.match(name)
        if m:
          snippets[(city, m['seq'])].append(int(m['frame']))
    stride = c.clip_stride or c.num_frames
    clips = []
    for (city, seq), frames in sorted(snippets.items()):
      frames.sort()
      if c.labels == 'ssmask':
        # Every full clip; a snippet shorter than T still yields one (reported when read).
        starts = range(frames[0], frames[-1] - c.num_frames + 2, stride) or [frames[0]]
      else:
        starts = frames
      for start in starts:
        label = self._label_path(root, folder, city, seq, f'{start:06d}')
        if not os.path.exists(label):
          continue  # Not an annotated frame (gtfine) or no prediction for it (ssmask).
        paths = [os.path.join(frames_dir, city, f'{city}_{seq}_{start + i:06d}_leftImg8bit.png')
                 for i in range(c.num_frames)]
        clips.append((f'{city}_{seq}_{start:06d}', (paths, label, frames[-1])))
    return clips

  def _load_clip(self, clip):
    c = self.builder_config
    paths, label_path, last = clip
    first = int(_FRAME_RE.match(os.path.basename(paths[0]))['frame'])
    if first + c.num_frames - 1 > last:
      raise common.BadInputError(
          f'{paths[0]}: clip is shorter than {c.num_frames} frames (its sequence ends at frame '
          f'{last:06d})', 'clip shorter than num_frames')
    size = (c.height, c.width)
    video = np.stack([common.read_image(p, size, 'RGB') for p in paths])
    table = common.CITYSCAPES_LABEL_TO_TRAIN_ID if c.labels == 'gtfine' else None
    label = common.read_label(label_path, size, table)
    return {'video': video, 'label': label[..., None],
            'clip_id': os.path.basename(paths[0])[:-len('_leftImg8bit.png')]}

  def _generate_examples(self, clips, what):
    return common.generate_checked(clips, self._load_clip, self.skip_bad_examples, what)
