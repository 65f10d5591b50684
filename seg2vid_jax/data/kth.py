"""TFDS builder `seg2vid_kth`: KTH human actions, grayscale clips, one config per action.

Reads the frames layout that the seg2vid authors used, from `manual_dir`:

    <manual_dir>/<action>/<person>_<action>_<d>/image-<n>_128x128.png

e.g. walking/person01_walking_d1/image-001_128x128.png (n counts from 1, zero-padded to at least
three digits). Persons 1-16 form the train split and 17-25 the test split, as in the authors'
file lists. Each sequence folder gives clips of T consecutive frames, one every `clip_stride`
frames. KTH has no label maps: the model is conditioned on the first frame.
"""

import dataclasses
import os
import re

import numpy as np
import tensorflow_datasets as tfds

from seg2vid_jax.data import common

ACTIONS = ('boxing', 'handclapping', 'handwaving', 'jogging', 'running', 'walking')
TRAIN_PERSONS = range(1, 17)
TEST_PERSONS = range(17, 26)
_SEQ_RE = re.compile(r'^person(?P<person>\d+)_(?P<action>[a-z]+)_d(?P<d>\d+)$')
_FRAME_RE = re.compile(r'^image-(?P<n>\d+)_(?P<h>\d+)x(?P<w>\d+)\.png$')


@dataclasses.dataclass
class KthConfig(tfds.core.BuilderConfig):
  """Actions, frame size and clip length."""
  actions: tuple = ACTIONS
  height: int = 128
  width: int = 128
  num_frames: int = 10
  clip_stride: int = 0  # Frames between clip starts within a sequence; 0 means num_frames.


def _config(action, num_frames=10):
  return KthConfig(name=f'{action}_t{num_frames}', actions=(action,), num_frames=num_frames,
                   description=f'KTH {action}, 128x128 grayscale, {num_frames} frames.')


class Kth(tfds.core.GeneratorBasedBuilder):
  """KTH action clips (grayscale) from the authors' per-frame PNG layout."""

  name = 'seg2vid_kth'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First version.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Download the KTH action videos (https://www.csc.kth.se/cvap/actions/), extract every video to
  128x128 grayscale PNG frames named <action>/<person>_<action>_<d>/image-<n>_128x128.png (e.g.
  with ffmpeg -i person01_walking_d1_uncomp.avi -vf scale=128:128,format=gray
  walking/person01_walking_d1/image-%03d_128x128.png) and point manual_dir at the folder that
  holds the action folders.
  """
  BUILDER_CONFIGS = [_config(a) for a in ACTIONS] + [
      KthConfig(name='all_t10', description='All six actions, 128x128 grayscale, 10 frames.')]

  def __init__(self, *, skip_bad_examples=False, **kwargs):
    """`skip_bad_examples`: drop bad clips/sequences (and log them) instead of stopping."""
    super().__init__(**kwargs)
    self.skip_bad_examples = skip_bad_examples

  def _info(self):
    c = self.builder_config
    unknown = set(c.actions) - set(ACTIONS)
    if unknown:
      raise ValueError(f'{self.name}/{c.name}: unknown actions {sorted(unknown)}; expected some '
                       f'of {ACTIONS}')
    return self.dataset_info_from_configs(
        description=__doc__.splitlines()[0],
        features=tfds.features.FeaturesDict({
            'video': common.video_feature(c.num_frames, c.height, c.width, channels=1),
            'clip_id': tfds.features.Text(),
        }),
        homepage='https://www.csc.kth.se/cvap/actions/',
    )

  def _split_generators(self, dl_manager):
    root = dl_manager.manual_dir
    sequences = self._find_sequences(root)
    generators = {}
    for split, persons in (('train', TRAIN_PERSONS), ('test', TEST_PERSONS)):
      chosen = [s for s in sequences if s[0] in persons]
      if not chosen:
        raise common.BadInputError(
            f'{self.name}: no sequence folder of persons {persons.start}-{persons.stop - 1} '
            f'for actions {list(self.builder_config.actions)} under {root} (split {split} would '
            'be empty); expected <action>/person<NN>_<action>_d<N>/image-<n>_128x128.png',
            'empty split')
      generators[split] = self._generate_examples(chosen, f'{self.name} {split}')
    return generators

  def _find_sequences(self, root):
    """(person, folder path, sorted [(n, file name)]) for every sequence folder of the actions."""
    sequences = []
    for action in self.builder_config.actions:
      action_dir = os.path.join(root, action)
      if not os.path.isdir(action_dir):
        raise common.BadInputError(
            f'{self.name}: action folder {action_dir} does not exist; see '
            'MANUAL_DOWNLOAD_INSTRUCTIONS', 'missing split')
      for name in sorted(os.listdir(action_dir)):
        m = _SEQ_RE.match(name)
        if not m or m['action'] != action:
          continue
        folder = os.path.join(action_dir, name)
        frames = sorted((int(f['n']), f.string) for f in map(_FRAME_RE.match, os.listdir(folder))
                        if f)
        sequences.append((int(m['person']), folder, frames))
    return sequences

  def _generate_examples(self, sequences, what):
    c = self.builder_config
    stride = c.clip_stride or c.num_frames
    clips = []
    log = common.SkipLog(what)
    for _, folder, frames in sequences:
      seq = os.path.basename(folder)
      if len(frames) < c.num_frames:
        error = common.BadInputError(
            f'{folder}: sequence has {len(frames)} frames, shorter than a clip of '
            f'{c.num_frames}', 'clip shorter than num_frames')
        if not self.skip_bad_examples:
          raise error
        log.skip(seq, error)
        continue
      first = frames[0][0]
      numbers = {n: name for n, name in frames}
      suffix = frames[0][1][frames[0][1].index('_'):]  # e.g. '_128x128.png'
      for start in range(first, frames[-1][0] - c.num_frames + 2, stride):
        # Expected file names; a gap in the numbering is reported as a missing frame.
        paths = [os.path.join(folder, numbers.get(n, f'image-{n:03d}{suffix}'))
                 for n in range(start, start + c.num_frames)]
        clips.append((f'{seq}_{start:04d}', paths))
    if log.total:
      log.report(len(clips))
    return common.generate_checked(clips, self._load_clip, self.skip_bad_examples, what)

  def _load_clip(self, paths):
    c = self.builder_config
    video = np.stack([common.read_image(p, (c.height, c.width), 'L') for p in paths])
    clip_id = f'{os.path.basename(os.path.dirname(paths[0]))}/{os.path.basename(paths[0])}'
    return {'video': video[..., None], 'clip_id': clip_id}
