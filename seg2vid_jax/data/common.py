"""Helpers shared by the TFDS builders: label tables, checked image reading, skip bookkeeping.

Every builder reads user files, so every failure names the file and what is wrong with it.
A builder created with ``skip_bad_examples=True`` drops a bad clip instead of stopping, counts it
under a reason and logs the totals when the split is written.
"""

import collections
import concurrent.futures
import re
import threading

from absl import logging
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
  """Counts skipped clips by reason, and logs them; thread-safe."""

  def __init__(self, what):
    self.what = what
    self.counts = collections.Counter()
    self._lock = threading.Lock()

  def skip(self, clip_id, error):
    with self._lock:
      self.counts[error.reason] += 1
    logging.warning('%s: skipping clip %s: %s', self.what, clip_id, error)

  @property
  def total(self):
    return sum(self.counts.values())

  def report(self, kept):
    """Logs the totals; raises if nothing is left to write."""
    if self.total:
      reasons = ', '.join(f'{n} {reason}' for reason, n in sorted(self.counts.items()))
      logging.warning('%s: skipped %d of %d clips (%s)', self.what, self.total,
                      self.total + kept, reasons)
    if kept == 0:
      raise BadInputError(f'{self.what}: no usable clip is left (all {self.total} were skipped: '
                          f'{dict(self.counts)})', 'empty split')


def generate_checked(clips, load_fn, skip_bad_examples, what, num_threads=4, chunk=16):
  """Yields (key, example) for `clips`, loading them on a few threads, in order.

  Args:
    clips: list of (key, clip) pairs; `load_fn(clip)` returns the example dict or raises
      BadInputError.
    load_fn: decodes and checks one clip.
    skip_bad_examples: drop bad clips (and log how many and why) instead of stopping.
    what: name for messages, e.g. 'seg2vid_cityscapes train'.
    num_threads, chunk: PIL decodes outside the GIL, so a small pool speeds up preparation;
      clips are submitted `chunk` at a time to bound memory.
  """
  log = SkipLog(what)
  kept = 0
  with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
    for start in range(0, len(clips), chunk):
      batch = clips[start:start + chunk]
      futures = [pool.submit(load_fn, clip) for _, clip in batch]
      for (key, _), future in zip(batch, futures):
        try:
          example = future.result()
        except BadInputError as e:
          if not skip_bad_examples:
            raise
          log.skip(key, e)
          continue
        kept += 1
        yield key, example
  log.report(kept)
