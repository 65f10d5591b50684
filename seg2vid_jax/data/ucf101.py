"""TFDS builder `seg2vid_ucf101`: UCF-101 action videos, RGB clips, official train/test splits.

Reads the videos and split lists as distributed (UCF101.rar and
UCF101TrainTestSplits-RecognitionTask.zip, https://www.crcv.ucf.edu/data/UCF101.php), from
`manual_dir`:

    <manual_dir>/UCF-101/<Class>/v_<Class>_g<GG>_c<CC>.avi   320x240, 25 fps, RGB
    <manual_dir>/ucfTrainTestlist/trainlist0<N>.txt  'ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1'
    <manual_dir>/ucfTrainTestlist/testlist0<N>.txt   'ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi'

Split N (`split_number`, 1, 2 or 3) takes its train and test videos from the two lists; a video
the lists do not name is not used, and a listed video that is not on disk is a missing file.
Without the ucfTrainTestlist folder the builder falls back to the rule the lists follow: the
videos of groups 1-7 (split 1), 8-14 (split 2) or 15-21 (split 3) form the test split, the other
groups of 1-25 the train split (a folder with only one of the two lists is an error). The class
is the folder name (the files of HandstandPushups are named v_HandStandPushups_...); `classes`
keeps a subset of the class folders, () all 101.

Each video gives clips of T consecutive frames, one every `clip_stride` frames (default T),
resized to the config's (height, width) without a crop. UCF-101 has no label maps: the model is
conditioned on the first frame. At 128x128, T = 10 and the default stride, all of UCF-101 is
about 240,000 clips, 120 GB; a larger `clip_stride` or a class subset makes it smaller.
"""

import dataclasses
import os
import re

from absl import logging
import tensorflow_datasets as tfds

from seg2vid_jax.data import common

VIDEO_DIR = 'UCF-101'
LIST_DIR = 'ucfTrainTestlist'
NUM_GROUPS = 25
# Groups of the test split of official split N (the lists follow this rule).
TEST_GROUPS = {1: range(1, 8), 2: range(8, 15), 3: range(15, 22)}
_VIDEO_RE = re.compile(r'^v_(?P<cls>\w+?)_g(?P<g>\d+)_c(?P<c>\d+)\.avi$', re.IGNORECASE)


@dataclasses.dataclass
class Ucf101Config(tfds.core.BuilderConfig):
  """Official split, classes, frame size and clip length."""
  split_number: int = 1  # Official train/test split 1, 2 or 3.
  classes: tuple = ()  # Class folders to use (e.g. ('ApplyEyeMakeup',)); (): all of them.
  height: int = 128
  width: int = 128
  num_frames: int = 10
  clip_stride: int = 0  # Frames between clip starts within a video; 0 means num_frames.


def _config(split_number, num_frames=10):
  return Ucf101Config(
      name=f'split{split_number}_128x128_t{num_frames}', split_number=split_number,
      num_frames=num_frames,
      description=f'UCF-101 split {split_number}, all classes, 128x128 RGB, {num_frames} frames.')


def read_split_list(path):
  """The 'Class/v_Class_gGG_cCC.avi' entries of a train or test list, in order (labels dropped)."""
  lines = common.read_text_lines(path, 'split list')
  entries, seen = [], set()
  for number, line in enumerate(lines, 1):
    fields = line.split()
    if not fields:
      continue
    entry = fields[0].replace('\\', '/').strip('/')
    if entry.count('/') != 1 or not _VIDEO_RE.match(entry.split('/')[1]):
      raise common.BadInputError(f'{path}:{number}: {line.strip()!r} is not '
                                 "'<Class>/v_<Class>_g<GG>_c<CC>.avi'", 'corrupt split list')
    if entry not in seen:  # A repeated line would repeat the video's clips.
      seen.add(entry)
      entries.append(entry)
  return entries


class Ucf101(tfds.core.GeneratorBasedBuilder):
  """UCF-101 clips (RGB) from the distributed .avi videos and split lists."""

  name = 'seg2vid_ucf101'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First version.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Download UCF101.rar and UCF101TrainTestSplits-RecognitionTask.zip from
  https://www.crcv.ucf.edu/data/UCF101.php and extract both into manual_dir, so that it holds
  UCF-101/<Class>/v_<Class>_g<GG>_c<CC>.avi and ucfTrainTestlist/trainlist01.txt ...
  """
  BUILDER_CONFIGS = [_config(n) for n in (1, 2, 3)] + [_config(1, num_frames=5)]

  def __init__(self, *, skip_bad_examples=False, **kwargs):
    """`skip_bad_examples`: drop bad videos (and log them) instead of stopping."""
    super().__init__(**kwargs)
    self.skip_bad_examples = skip_bad_examples

  def _info(self):
    c = self.builder_config
    if c.split_number not in TEST_GROUPS:
      raise ValueError(f'{self.name}/{c.name}: split_number={c.split_number}; UCF-101 has '
                       f'splits {sorted(TEST_GROUPS)}')
    return self.dataset_info_from_configs(
        description=__doc__.splitlines()[0],
        features=tfds.features.FeaturesDict({
            'video': common.video_feature(c.num_frames, c.height, c.width, channels=3),
            'clip_id': tfds.features.Text(),
        }),
        homepage='https://www.crcv.ucf.edu/data/UCF101.php',
    )

  def _split_generators(self, dl_manager):
    root = dl_manager.manual_dir
    video_root = os.path.join(root, VIDEO_DIR)
    if not os.path.isdir(video_root):
      raise common.BadInputError(
          f'{self.name}: {video_root} does not exist; expected '
          f'<manual_dir>/{VIDEO_DIR}/<Class>/v_<Class>_g<GG>_c<CC>.avi (see '
          'MANUAL_DOWNLOAD_INSTRUCTIONS)', 'missing split')
    classes = sorted(d for d in os.listdir(video_root)
                     if os.path.isdir(os.path.join(video_root, d)))
    wanted = self.builder_config.classes or classes
    unknown = sorted(set(wanted) - set(classes))
    if unknown:
      raise ValueError(f'{self.name}: classes {unknown} have no folder in {video_root} '
                       f'(it has {len(classes)}: {classes[:5]}...)')
    splits = self._split_entries(root, video_root, set(wanted))
    generators = {}
    for split, entries in splits.items():
      if not entries:
        raise common.BadInputError(
            f'{self.name}: no video of classes {sorted(wanted)[:5]}... for split {split} '
            f'(official split {self.builder_config.split_number}) under {video_root}',
            'empty split')
      generators[split] = self._generate_examples(video_root, entries, f'{self.name} {split}')
    return generators

  def _split_entries(self, root, video_root, classes):
    """{'train': [...], 'test': [...]} of 'Class/file.avi' entries, from the lists or the rule."""
    n = self.builder_config.split_number
    lists = {split: os.path.join(root, LIST_DIR, f'{split}list{n:02d}.txt')
             for split in ('train', 'test')}
    present = {split: os.path.isfile(path) for split, path in lists.items()}
    if any(present.values()):
      if not all(present.values()):
        missing = [path for split, path in lists.items() if not present[split]]
        raise common.BadInputError(f'{self.name}: {missing[0]} does not exist, but the other '
                                   f'list of split {n} does', 'missing split')
      splits = {split: [e for e in read_split_list(path) if e.split('/')[0] in classes]
                for split, path in lists.items()}
      listed = set(splits['train']) | set(splits['test'])
      unlisted = sum(1 for e in self._videos_on_disk(video_root, classes) if e not in listed)
      if unlisted:
        logging.info('%s: %d videos under %s are in neither list of split %d; not used',
                     self.name, unlisted, video_root, n)
      return splits
    logging.info('%s: no %s; split %d by the standard rule: groups %d-%d test, the others train',
                 self.name, os.path.join(root, LIST_DIR), n, TEST_GROUPS[n].start,
                 TEST_GROUPS[n].stop - 1)
    splits = {'train': [], 'test': []}
    for entry in self._videos_on_disk(video_root, classes):
      group = int(_VIDEO_RE.match(entry.split('/')[1])['g'])
      if not 1 <= group <= NUM_GROUPS:
        logging.warning('%s: %s: group %d is outside 1-%d; not used', self.name, entry, group,
                        NUM_GROUPS)
        continue
      splits['test' if group in TEST_GROUPS[n] else 'train'].append(entry)
    return splits

  def _videos_on_disk(self, video_root, classes):
    """Sorted 'Class/file.avi' of the videos named v_<Class>_g<GG>_c<CC>.avi in the classes."""
    entries = []
    for cls in sorted(classes):
      for name in sorted(os.listdir(os.path.join(video_root, cls))):
        if _VIDEO_RE.match(name):
          entries.append(f'{cls}/{name}')
        elif name.lower().endswith('.avi'):
          logging.warning('%s: %s/%s is not named v_<Class>_g<GG>_c<CC>.avi; not used',
                          self.name, cls, name)
    return entries

  def _generate_examples(self, video_root, entries, what):
    sources = [(entry, os.path.join(video_root, *entry.split('/'))) for entry in entries]
    return common.generate_checked_sources(
        sources, lambda path: self._load(video_root, path), self.skip_bad_examples, what,
        unit='videos')

  def _load(self, video_root, path):
    """[(key, example)] for every clip of one video."""
    c = self.builder_config
    frames = common.read_video(path, (c.height, c.width), 'RGB')
    if len(frames) < c.num_frames:
      raise common.BadInputError(f'{path}: video has {len(frames)} frames, shorter than a clip '
                                 f'of {c.num_frames}', 'clip shorter than num_frames')
    entry = os.path.relpath(path, video_root).replace(os.sep, '/')
    examples = []
    for start in range(0, len(frames) - c.num_frames + 1, c.clip_stride or c.num_frames):
      clip_id = f'{entry}/frames-{start + 1:04d}-{start + c.num_frames:04d}'
      examples.append((clip_id, {'video': frames[start:start + c.num_frames],
                                 'clip_id': clip_id}))
    return examples
