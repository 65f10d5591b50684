"""Helpers shared by the TFDS builders: label tables, checked image and video reading, skip
bookkeeping.

Every builder reads user files, so every failure names the file and what is wrong with it.
A builder created with ``skip_bad_examples=True`` drops a bad clip instead of stopping, counts it
under a reason and logs the totals when the split is written.
"""

import collections
import concurrent.futures
import os
import re
import struct
import threading

from absl import logging
import imageio_ffmpeg
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

NUM_CLASSES = 20  # Cityscapes train ids 0..18 plus 19 for ignore / other.
IGNORE_ID = 19
BACKGROUND_IDS = tuple(range(0, 11))  # road .. sky
FOREGROUND_IDS = tuple(range(11, 20))  # person .. bicycle, and 19

# Official Cityscapes labelIds -> trainIds (cityscapesScripts labels.py), 255 (not trained on)
# mapped to our extra id 19. Index = labelId 0..33.
CITYSCAPES_LABEL_TO_TRAIN_ID = np.array([
    19, 19, 19, 19, 19, 19, 19,  # unlabeled, ego vehicle, rectification border, out of roi,
                                 # static, dynamic, ground
    0, 1, 19, 19,  # road, sidewalk, parking, rail track
    2, 3, 4, 19, 19, 19,  # building, wall, fence, guard rail, bridge, tunnel
    5, 19, 6, 7,  # pole, polegroup, traffic light, traffic sign
    8, 9, 10,  # vegetation, terrain, sky
    11, 12, 13, 14, 15, 19, 19, 16, 17, 18,  # person, rider, car, truck, bus, caravan, trailer,
                                             # train, motorcycle, bicycle
], np.uint8)

# Resampling filters: frames are smoothed (PIL's bilinear filter widens its support when it
# shrinks, i.e. it antialiases); label maps must keep their ids, so nearest.
_FRAME_FILTER = Image.Resampling.BILINEAR
_LABEL_FILTER = Image.Resampling.NEAREST


def video_feature(num_frames, height, width, channels=3):
  """Clip frames as raw uint8 bytes.

  Not tfds.features.Video: decoding PNG frames limits a 2-core machine to ~300 clips/s at
  128x256, T = 5, while raw bytes decode at thousands per second, for about twice the disk
  space of PNG (natural images at this size compress poorly anyway).
  """
  return tfds.features.Tensor(shape=(num_frames, height, width, channels), dtype=np.uint8,
                              encoding=tfds.features.Encoding.BYTES)


class BadInputError(ValueError):
  """A user file that cannot be used; `reason` is a short key for the skip counters."""

  def __init__(self, message, reason):
    super().__init__(message)
    self.reason = reason


def read_text_lines(path, what: str):
  """The lines of a dataset's Latin-1 text file (sequence file, split list); a `BadInputError`
  naming the file and `what` it is if it cannot be read."""
  try:
    with open(path, encoding='latin-1') as f:
      return f.read().splitlines()
  except OSError as e:
    raise BadInputError(f'{path}: cannot read the {what} ({e})', f'corrupt {what}') from None


def read_image(path, size, mode):
  """Reads one frame, converted to `mode` ('RGB' or 'L') and resized to `size` (H, W).

  Raises:
    BadInputError: the file is missing or cannot be decoded.
  """
  with _open(path) as image:
    image = image.convert(mode)
    height, width = size
    if image.size != (width, height):
      image = image.resize((width, height), _FRAME_FILTER)
    return np.asarray(image)


def read_label(path, size, table=None):
  """Reads a label map, checks and maps its ids (`to_train_ids`), resizes it (nearest).

  The ids are checked at the file's own resolution, before resizing can drop a pixel.

  Returns:
    uint8 (H, W) train ids 0..19.
  """
  with _open(path) as image:
    if image.mode not in ('L', 'P', 'I', 'I;16'):
      raise BadInputError(f'{path}: label map has mode {image.mode}; expected a single-channel '
                          'PNG of ids', 'label map is not single-channel')
    raw = np.asarray(image).astype(np.int64)
  ids = Image.fromarray(to_train_ids(raw, path, table))
  height, width = size
  if ids.size != (width, height):
    ids = ids.resize((width, height), _LABEL_FILTER)
  return np.asarray(ids)


class _open:  # pylint: disable=invalid-name
  """Context manager: a fully decoded PIL image, or a BadInputError naming the file."""

  def __init__(self, path):
    self.path = path
    self.image = None

  def __enter__(self):
    try:
      self.image = Image.open(self.path)
      self.image.load()
    except FileNotFoundError:
      raise BadInputError(f'{self.path}: file is missing', 'missing file') from None
    except (OSError, SyntaxError, ValueError) as e:
      raise BadInputError(f'{self.path}: cannot decode image ({e})', 'corrupt image') from None
    return self.image

  def __exit__(self, *exc):
    self.image.close()
    return False


def read_video(path, size, mode):
  """Decodes every frame of a video file, converted to `mode` ('RGB' or 'L') and resized to
  `size` (H, W) exactly as `read_image` treats a frame.

  ffmpeg (the binary bundled with imageio-ffmpeg) decodes to RGB; PIL then converts and resizes,
  so that a video and the same frames saved as PNG give the same clips. Only the resized frames
  are kept, one at a time, so a long video costs N * H * W * C bytes.

  An AVI is checked against its RIFF header first: ffmpeg decodes a truncated file up to where it
  ends without an error, so a file shorter than its header announces is reported as truncated.

  Returns:
    uint8 (N, H, W) for 'L', (N, H, W, 3) for 'RGB'; N >= 1.

  Raises:
    BadInputError: the file is missing ('missing file'), truncated ('truncated video'), cannot
      be decoded ('corrupt video') or holds no frame ('video without frames').
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise BadInputError(f'{path}: file is missing', 'missing file')
  header_frames = _check_avi(path) if path.lower().endswith('.avi') else None
  height, width = size
  frames = []
  reader = imageio_ffmpeg.read_frames(path, pix_fmt='rgb24')
  try:
    source_width, source_height = next(reader)['size']
    for data in reader:
      image = Image.frombuffer('RGB', (source_width, source_height), data, 'raw', 'RGB', 0, 1)
      image = image.convert(mode)
      if image.size != (width, height):
        image = image.resize((width, height), _FRAME_FILTER)
      frames.append(np.asarray(image))
  except (OSError, RuntimeError) as e:
    if not frames and header_frames == 0:
      raise BadInputError(f'{path}: video has no frames (its AVI header counts 0)',
                          'video without frames') from None
    where = f' after {len(frames)} frames' if frames else ''
    raise BadInputError(f'{path}: ffmpeg cannot decode the video{where} ({_ffmpeg_error(e)})',
                        'corrupt video') from None
  finally:
    reader.close()
  if not frames:
    raise BadInputError(f'{path}: video has no frames', 'video without frames')
  return np.stack(frames)


def _check_avi(path):
  """Checks an AVI's RIFF header against the file; returns the frame count of its main header
  (None if absent). Raises BadInputError if it is no AVI or shorter than the header says."""
  file_size = os.path.getsize(path)
  with open(path, 'rb') as f:
    head = f.read(64)
  if file_size == 0:
    raise BadInputError(f'{path}: file is empty', 'corrupt video')
  if len(head) < 12 or head[:4] != b'RIFF' or head[8:12] != b'AVI ':
    raise BadInputError(f'{path}: not an AVI file (no RIFF AVI header)', 'corrupt video')
  riff_size = struct.unpack('<I', head[4:8])[0] + 8
  # Writers that could not seek back leave the size 0; OpenDML files continue after it.
  if riff_size > 8 and file_size < riff_size:
    raise BadInputError(f'{path}: truncated: the file has {file_size} bytes, its RIFF header '
                        f'announces {riff_size}', 'truncated video')
  if len(head) >= 52 and head[12:16] == b'LIST' and head[20:28] == b'hdrlavih':
    return struct.unpack('<I', head[48:52])[0]  # avih dwTotalFrames
  return None


def _ffmpeg_error(error):
  """The informative line of an imageio-ffmpeg exception (which carries ffmpeg's whole log)."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  keys = ('rror', 'nvalid', 'No such', 'not found', 'End of file')
  informative = [line for line in lines if any(k in line for k in keys)]
  return (informative or lines or [type(error).__name__])[-1]


def to_train_ids(raw, path, table=None):
  """Maps a raw label map to train ids 0..19 (uint8), checking every id.

  Args:
    raw: integer array read from `path`.
    path: file name, for the error message.
    table: optional lookup table (e.g. CITYSCAPES_LABEL_TO_TRAIN_ID) for raw ids 0..len-1.
      Without it the ids must already be train ids 0..19, and 255 (ignore) becomes 19.

  Raises:
    BadInputError: an id outside the known set.
  """
  raw = np.asarray(raw)
  if table is not None:
    bad = np.unique(raw[(raw < 0) | (raw >= len(table))])
    if bad.size:
      raise BadInputError(f'{path}: label ids {bad.tolist()[:10]} are outside the known ids '
                          f'0..{len(table) - 1}', 'label id outside the known set')
    return table[raw]
  raw = np.where(raw == 255, IGNORE_ID, raw)
  bad = np.unique(raw[(raw < 0) | (raw >= NUM_CLASSES)])
  if bad.size:
    raise BadInputError(f'{path}: label ids {bad.tolist()[:10]} are outside the train ids '
                        f'0..{NUM_CLASSES - 1} (255 = ignore)', 'label id outside the known set')
  return raw.astype(np.uint8)


def natural_key(name):
  """Sort key that orders 'frame2' before 'frame10'."""
  return [int(part) if part.isdigit() else part for part in re.split(r'(\d+)', str(name))]


class SkipLog:
  """Counts skipped clips (or files of clips, `unit`) by reason, and logs them; thread-safe."""

  def __init__(self, what, unit='clips'):
    self.what = what
    self.unit = unit
    self.counts = collections.Counter()
    self._lock = threading.Lock()

  def skip(self, clip_id, error):
    with self._lock:
      self.counts[error.reason] += 1
    logging.warning('%s: skipping %s: %s', self.what, clip_id, error)

  @property
  def total(self):
    return sum(self.counts.values())

  def report(self, kept):
    """Logs the totals; raises if nothing is left to write (`kept` counts `unit`)."""
    if self.total:
      reasons = ', '.join(f'{n} {reason}' for reason, n in sorted(self.counts.items()))
      logging.warning('%s: skipped %d of %d %s (%s)', self.what, self.total,
                      self.total + kept, self.unit, reasons)
    if kept == 0:
      raise BadInputError(f'{self.what}: no usable clip is left (all {self.total} {self.unit} '
                          f'were skipped: {dict(self.counts)})', 'empty split')


def generate_checked(clips, load_fn, skip_bad_examples, what, num_threads=4, chunk=16):
  """Yields (key, example) for `clips`, loading them on a few threads, in order.

  Args:
    clips: list of (key, clip) pairs; `load_fn(clip)` returns the example dict or raises
      BadInputError.
    load_fn: decodes and checks one clip.
    skip_bad_examples: drop bad clips (and log how many and why) instead of stopping.
    what: name for messages, e.g. 'seg2vid_cityscapes train'.
    num_threads, chunk: PIL decodes outside the GIL, so a small pool speeds up preparation;
      at most `chunk` clips are loaded ahead, to bound memory.
  """
  sources = [(key, (key, clip)) for key, clip in clips]
  yield from generate_checked_sources(
      sources, lambda key_clip: [(key_clip[0], load_fn(key_clip[1]))], skip_bad_examples, what,
      unit='clips', num_threads=num_threads, window=chunk)


def generate_checked_sources(sources, load_fn, skip_bad_examples, what, unit='videos',
                             num_threads=3, window=4):
  """Yields (key, example) for every clip of `sources`, each loaded whole on a few threads, in
  order: for files that hold several clips (a video is decoded once for all its clips).

  Args:
    sources: list of (name, source) pairs; `load_fn(source)` returns a list of (key, example)
      or raises BadInputError, and then all of the source's clips are bad together.
    load_fn: decodes and checks one source.
    skip_bad_examples: drop bad sources (and log how many and why) instead of stopping.
    what: name for messages, e.g. 'seg2vid_ucf101 train'.
    unit: what a source is, for the totals ('skipped 2 of 40 videos (...)').
    num_threads, window: ffmpeg and PIL work outside the GIL, so a small pool speeds up
      preparation; at most `window` sources are loaded ahead, to bound memory.
  """
  log = SkipLog(what, unit)
  kept = 0
  pending = collections.deque()
  todo = iter(sources)
  with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:

    def submit():
      item = next(todo, None)
      if item is not None:
        pending.append((item[0], pool.submit(load_fn, item[1])))

    for _ in range(max(window, 1)):
      submit()
    while pending:
      name, future = pending.popleft()
      submit()
      try:
        examples = future.result()
      except BadInputError as e:
        if not skip_bad_examples:
          for _, other in pending:
            other.cancel()
          raise
        log.skip(name, e)
        continue
      kept += 1
      yield from examples
  log.report(kept)
