"""TFDS builder `seg2vid_kth`: KTH human actions, grayscale clips, one config per action.

Reads, from `manual_dir`, either layout, chosen per sequence:

    <manual_dir>/<action>/person<NN>_<action>_d<N>_uncomp.avi       the videos as distributed
    <manual_dir>/<action>/person<NN>_<action>_d<N>/image-<n>_128x128.png    extracted frames
    <manual_dir>/00sequences.txt  (or <manual_dir>/<folder>/00sequences.txt)   optional

The KTH zips (boxing.zip ...) extract to the first layout: 160x120 videos at 25 fps, grayscale
content, decoded with the ffmpeg of imageio-ffmpeg. The second is the frames layout that the
seg2vid authors used (n counts from 1, zero-padded to at least three digits); a sequence present
in both is read from its frames. Frame n of a folder is frame n of the video (1-based).

KTH's sequence file `00sequences.txt` splits each video into the subsequences of the action
(lines such as `person01_boxing_d1  frames  1-95, 96-185, 186-245, 246-360`, 1-based inclusive
ranges). When it gives ranges for a sequence, clips lie within one range; otherwise (no file, no
line, no readable range, or `sequence_ranges=False`) within the whole sequence. Ranges are
clamped to the frames there are (with a warning).

Persons 1-16 form the train split and 17-25 the test split, as in the authors' file lists. Each
range gives clips of T consecutive frames, one every `clip_stride` frames. KTH has no label maps:
the model is conditioned on the first frame.
"""

import collections
import dataclasses
import os
import re

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from seg2vid_jax.data import common

ACTIONS = ('boxing', 'handclapping', 'handwaving', 'jogging', 'running', 'walking')
TRAIN_PERSONS = range(1, 17)
TEST_PERSONS = range(17, 26)
SEQUENCE_FILE = '00sequences.txt'
_SEQ_RE = re.compile(r'^person(?P<person>\d+)_(?P<action>[a-z]+)_d(?P<d>\d+)$')
_AVI_RE = re.compile(r'^(?P<seq>person(?P<person>\d+)_(?P<action>[a-z]+)_d\d+)(?:_uncomp)?\.avi$')
_FRAME_RE = re.compile(r'^image-(?P<n>\d+)_(?P<h>\d+)x(?P<w>\d+)\.png$')
_LINE_RE = re.compile(r'^\s*(?P<seq>person\d+_[a-z]+_d\d+)\b(?P<rest>.*)$')
_RANGE_RE = re.compile(r'(\d+)\s*-\s*(\d+)')


@dataclasses.dataclass
class KthConfig(tfds.core.BuilderConfig):
  """Actions, frame size and clip length."""
  actions: tuple = ACTIONS
  height: int = 128
  width: int = 128
  num_frames: int = 10
  clip_stride: int = 0  # Frames between clip starts within a sequence; 0 means num_frames.
  sequence_ranges: bool = True  # Keep clips inside the ranges of 00sequences.txt, if found.


def _config(action, num_frames=10):
  return KthConfig(name=f'{action}_t{num_frames}', actions=(action,), num_frames=num_frames,
                   description=f'KTH {action}, 128x128 grayscale, {num_frames} frames.')


# One sequence: `frames` is the sorted [(n, file name)] of a frame folder, None for a video.
_Sequence = collections.namedtuple('_Sequence', 'person name path frames')


def read_sequence_file(path):
  """{sequence name: [(first, last), ...]} from KTH's `00sequences.txt` (1-based, inclusive).

  Lines that name no sequence (the file's header) are ignored, as is whitespace and punctuation
  around the ranges. A line with no readable range and ranges that end before they start are
  logged and left out (the sequence then gives clips from the whole video); a sequence listed
  twice keeps its first ranges.
  """
  lines = common.read_text_lines(path, 'sequence file')
  ranges = {}
  for number, line in enumerate(lines, 1):
    m = _LINE_RE.match(line)
    if not m:
      continue
    seq = m['seq']
    found = []
    for a, b in ((int(a), int(b)) for a, b in _RANGE_RE.findall(m['rest'])):
      if 1 <= a <= b:
        found.append((a, b))
      else:
        logging.warning('%s:%d: %s: ignoring frame range %d-%d', path, number, seq, a, b)
    if not found:
      logging.warning('%s:%d: %s has no frame range; its clips come from the whole video',
                      path, number, seq)
      continue
    if seq in ranges:
      if ranges[seq] != found:
        logging.warning('%s:%d: %s is listed again with other ranges; keeping the first',
                        path, number, seq)
      continue
    ranges[seq] = found
  return ranges


def find_sequence_files(root):
  """`00sequences.txt` in `root`, then in its immediate sub-folders (sorted)."""
  candidates = [os.path.join(root, SEQUENCE_FILE)] + [
      os.path.join(root, d, SEQUENCE_FILE) for d in sorted(os.listdir(root))
      if os.path.isdir(os.path.join(root, d))]
  return [p for p in candidates if os.path.isfile(p)]


class Kth(tfds.core.GeneratorBasedBuilder):
  """KTH action clips (grayscale) from the distributed videos or the authors' PNG frames."""

  name = 'seg2vid_kth'
  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {
      '1.0.0': 'First version.',
      '1.1.0': 'Also reads the distributed .avi videos; clips stay inside the ranges of '
               '00sequences.txt when it is found.',
  }
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Download the six KTH action zips (https://www.csc.kth.se/cvap/actions/, boxing.zip ...
  walking.zip) and extract each into a folder of its action name, so that manual_dir holds
  <action>/person<NN>_<action>_d<N>_uncomp.avi; put 00sequences.txt (same page) in manual_dir
  to keep clips inside its subsequences. Frames extracted to
  <action>/person<NN>_<action>_d<N>/image-<n>_128x128.png (the seg2vid authors' layout) work too.
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
    ranges, files = self._read_ranges(root)
    generators = {}
    for split, persons in (('train', TRAIN_PERSONS), ('test', TEST_PERSONS)):
      chosen = [s for s in sequences if s.person in persons]
      if not chosen:
        raise common.BadInputError(
            f'{self.name}: no video or frame folder of persons {persons.start}-'
            f'{persons.stop - 1} for actions {list(self.builder_config.actions)} under {root} '
            f'(split {split} would be empty); expected '
            '<action>/person<NN>_<action>_d<N>_uncomp.avi or '
            '<action>/person<NN>_<action>_d<N>/image-<n>_128x128.png', 'empty split')
      generators[split] = self._generate_examples(chosen, ranges, files, f'{self.name} {split}')
    return generators

  def _read_ranges(self, root):
    """(ranges by sequence name, the files they came from) of the sequence files found."""
    if not self.builder_config.sequence_ranges:
      return {}, []
    files = find_sequence_files(root)
    ranges = {}
    for path in files:
      for seq, found in read_sequence_file(path).items():
        ranges.setdefault(seq, found)
    if files:
      logging.info('%s: frame ranges of %d sequences from %s', self.name, len(ranges),
                   ', '.join(files))
    return ranges, files

  def _find_sequences(self, root):
    """The _Sequence of every video or frame folder of the actions; a folder with frames wins."""
    sequences = []
    for action in self.builder_config.actions:
      action_dir = os.path.join(root, action)
      if not os.path.isdir(action_dir):
        raise common.BadInputError(
            f'{self.name}: action folder {action_dir} does not exist; see '
            'MANUAL_DOWNLOAD_INSTRUCTIONS', 'missing split')
      folders, videos = {}, {}
      for name in sorted(os.listdir(action_dir)):
        path = os.path.join(action_dir, name)
        m = _SEQ_RE.match(name)
        if m and m['action'] == action and os.path.isdir(path):
          frames = sorted((int(f['n']), f.string) for f in map(_FRAME_RE.match, os.listdir(path))
                          if f)
          folders[name] = _Sequence(int(m['person']), name, path, frames)
          continue
        m = _AVI_RE.match(name)
        if m and m['action'] == action and os.path.isfile(path):
          videos.setdefault(m['seq'], _Sequence(int(m['person']), m['seq'], path, None))
      both = [name for name, s in folders.items() if s.frames and name in videos]
      if both:
        logging.info('%s: %d sequences of %s have both a video and frames; reading the frames',
                     self.name, len(both), action)
      for name in sorted(set(folders) | set(videos)):
        folder = folders.get(name)
        sequences.append(folder if folder and (folder.frames or name not in videos)
                         else videos[name])
    return sequences

  def _spans(self, ranges, first, last, where):
    """1-based inclusive (start, end) of the clips within `ranges` (None: [(first, last)]),
    each range clamped to the frames first..last there are."""
    c = self.builder_config
    stride = c.clip_stride or c.num_frames
    spans = set()
    for a, b in ranges or [(first, last)]:
      if b > last or a < first:
        logging.warning('%s: frame range %d-%d of %s reaches beyond frames %d-%d; clamped',
                        where, a, b, SEQUENCE_FILE, first, last)
      a, b = max(a, first), min(b, last)
      spans.update((s, s + c.num_frames - 1) for s in range(a, b - c.num_frames + 2, stride))
    return sorted(spans)

  def _no_clip(self, where, ranges, length):
    """The error of a sequence of `length` frames whose `ranges` (or frames) hold no clip."""
    c = self.builder_config
    if ranges and length >= c.num_frames:
      return common.BadInputError(
          f'{where}: no frame range of {SEQUENCE_FILE} '
          f'({", ".join(f"{a}-{b}" for a, b in ranges)}) holds a clip of {c.num_frames} frames '
          f'within its {length} frames', 'clip shorter than num_frames')
    return common.BadInputError(
        f'{where}: sequence has {length} frames, shorter than a clip of {c.num_frames}',
        'clip shorter than num_frames')

  def _generate_examples(self, sequences, ranges, files, what):
    """Clips of `sequences`, within their `ranges` (read from the sequence `files`)."""
    sources = []
    log = common.SkipLog(what, 'sequences')
    for seq in sequences:
      seq_ranges = ranges.get(seq.name)
      if seq.frames is None:  # A video: its length is known once decoded.
        sources.append((os.path.basename(seq.path), ('video', seq.path, seq_ranges)))
        continue
      frames = seq.frames
      spans = self._spans(seq_ranges, frames[0][0], frames[-1][0], seq.path) if frames else []
      if len(frames) < self.builder_config.num_frames or not spans:
        error = self._no_clip(seq.path, seq_ranges, len(frames))
        if not self.skip_bad_examples:
          raise error
        log.skip(seq.name, error)
        continue
      numbers = {n: name for n, name in frames}
      suffix = frames[0][1][frames[0][1].index('_'):]  # e.g. '_128x128.png'
      for start, end in spans:
        # Expected file names; a gap in the numbering is reported as a missing frame.
        paths = [os.path.join(seq.path, numbers.get(n, f'image-{n:03d}{suffix}'))
                 for n in range(start, end + 1)]
        clip_id = f'{seq.name}/{os.path.basename(paths[0])}'
        sources.append((clip_id, ('frames', paths, clip_id)))
    if files:
      missing = sum(1 for s in sequences if s.name not in ranges)
      if missing:
        logging.info('%s: %d of %d sequences have no ranges in %s; their clips come from the '
                     'whole sequence', what, missing, len(sequences), SEQUENCE_FILE)
    if log.total:
      log.report(len(sequences) - log.total)
    kinds = {source[0] for _, source in sources}
    unit = {frozenset({'video'}): 'videos', frozenset({'frames'}): 'clips'}.get(
        frozenset(kinds), 'videos and clips of frames')
    return common.generate_checked_sources(sources, self._load, self.skip_bad_examples, what,
                                           unit=unit)

  def _load(self, source):
    """[(key, example)] of a source: one clip of PNG frames, or every clip of a video."""
    c = self.builder_config
    size = (c.height, c.width)
    if source[0] == 'frames':
      _, paths, clip_id = source
      video = np.stack([common.read_image(p, size, 'L') for p in paths])
      return [(clip_id, {'video': video[..., None], 'clip_id': clip_id})]
    _, path, ranges = source
    frames = common.read_video(path, size, 'L')
    spans = self._spans(ranges, 1, len(frames), path)
    if not spans:
      raise self._no_clip(path, ranges, len(frames))
    name = os.path.basename(path)
    examples = []
    for start, end in spans:
      clip_id = f'{name}/frames-{start:04d}-{end:04d}'
      examples.append((clip_id, {'video': frames[start - 1:end, ..., None], 'clip_id': clip_id}))
    return examples
