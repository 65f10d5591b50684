"""Turning model inputs and outputs into pictures and videos people can look at.

Plain numpy, outside jit. Everything returns uint8 RGB; frames given as floats are taken
to be in [0, 1]. Flow is in normalised units (x and y each span [-1, 1] across the image,
channel 0 = x); it is converted to pixels for colouring.
"""

import functools
import os
import subprocess
from typing import Mapping, Optional, Sequence

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np

# Cityscapes train-id colours (cityscapesScripts labels.py), index 19 = other / ignore.
CITYSCAPES_PALETTE = np.array([
    (128, 64, 128),   # 0 road
    (244, 35, 232),   # 1 sidewalk
    (70, 70, 70),     # 2 building
    (102, 102, 156),  # 3 wall
    (190, 153, 153),  # 4 fence
    (153, 153, 153),  # 5 pole
    (250, 170, 30),   # 6 traffic light
    (220, 220, 0),    # 7 traffic sign
    (107, 142, 35),   # 8 vegetation
    (152, 251, 152),  # 9 terrain
    (70, 130, 180),   # 10 sky
    (220, 20, 60),    # 11 person
    (255, 0, 0),      # 12 rider
    (0, 0, 142),      # 13 car
    (0, 0, 70),       # 14 truck
    (0, 60, 100),     # 15 bus
    (0, 80, 100),     # 16 train
    (0, 0, 230),      # 17 motorcycle
    (119, 11, 32),    # 18 bicycle
    (0, 0, 0),        # 19 other / ignore
], np.uint8)


def to_uint8(frames) -> np.ndarray:
  """uint8 frames unchanged; float frames in [0, 1] clipped, scaled and rounded."""
  frames = np.asarray(frames)
  if frames.dtype == np.uint8:
    return frames
  return np.round(np.clip(frames, 0.0, 1.0) * 255.0).astype(np.uint8)


def _to_rgb(frames) -> np.ndarray:
  """(…, H, W, 3) or (…, H, W, 1) frames -> uint8 (…, H, W, 3)."""
  frames = to_uint8(frames)
  if frames.shape[-1] == 1:
    frames = np.repeat(frames, 3, axis=-1)
  if frames.shape[-1] != 3:
    raise ValueError(f'expected 1 or 3 channels, got shape {frames.shape}')
  return frames


def middlebury_colorwheel() -> np.ndarray:
  """The 55 x 3 Middlebury flow colour wheel (Baker et al., colorcode.cpp), float 0..255.

  Hue segments red->yellow (RY=15), yellow->green (YG=6), green->cyan (GC=4),
  cyan->blue (CB=11), blue->magenta (BM=13), magenta->red (MR=6), each ramp
  floor(255 * i / n) for i in 0..n-1, as in the reference code.
  """
  segments = [  # (length, constant channel, ramped channel, ramp goes up)
      (15, 0, 1, True),   # RY: R = 255, G up
      (6, 1, 0, False),   # YG: G = 255, R down
      (4, 1, 2, True),    # GC: G = 255, B up
      (11, 2, 1, False),  # CB: B = 255, G down
      (13, 2, 0, True),   # BM: B = 255, R up
      (6, 0, 2, False),   # MR: R = 255, B down
  ]
  parts = []
  for n, const, ramp, up in segments:
    part = np.zeros((n, 3))
    steps = np.floor(255.0 * np.arange(n) / n)
    part[:, const] = 255.0
    part[:, ramp] = steps if up else 255.0 - steps
    parts.append(part)
  return np.concatenate(parts)


def flow_to_color(flow, max_flow: Optional[float] = None) -> np.ndarray:
  """Colours flow with the Middlebury colour code, (…, H, W, 2) -> uint8 RGB (…, H, W, 3).

  Baker et al., "A Database and Evaluation Methodology for Optical Flow" (IJCV 2011),
  reference code colorcode.cpp / flowToColor.m: hue gives the direction, saturation the
  magnitude; zero flow is white. The flow is first converted to pixels (u, v), v pointing
  down, then divided by `max_flow` (pixels) or, when None, by the largest magnitude in the
  whole input, so that clips and frames share one scale. Following the reference,
  a = atan2(-v, -u) / pi, fk = (a + 1) / 2 * (ncols - 1), linear interpolation between
  wheel entries floor(fk) and floor(fk) + 1, colour = 1 - r (1 - wheel) for r <= 1 and
  0.75 * wheel beyond, truncated to uint8. Resulting colours at full magnitude:
  +x (right) (255, 0, 0) red, -x (left) (0, 209, 255) cyan-blue,
  +y (down) (255, 229, 0) yellow, -y (up) (88, 0, 255) violet.
  Zero v is canonicalised to +0.0 so that +x never lands on the wheel's far end.
  """
  flow = np.asarray(flow, np.float64)
  h, w = flow.shape[-3:-1]
  u = flow[..., 0] * (w - 1) / 2.0
  v = flow[..., 1] * (h - 1) / 2.0 + 0.0  # -0.0 -> +0.0
  rad = np.sqrt(u * u + v * v)
  if max_flow is None:
    max_flow = rad.max() if rad.size else 0.0
  rad = rad / max(float(max_flow), 1e-12)

  wheel = middlebury_colorwheel()
  ncols = wheel.shape[0]
  a = np.arctan2(-v, -u) / np.pi
  fk = (a + 1.0) / 2.0 * (ncols - 1)
  k0 = np.floor(fk).astype(np.int64)
  k1 = (k0 + 1) % ncols
  f = (fk - k0)[..., None]
  col = ((1.0 - f) * wheel[k0] + f * wheel[k1]) / 255.0
  r = rad[..., None]
  col = np.where(r <= 1.0, 1.0 - r * (1.0 - col), col * 0.75)
  return np.floor(255.0 * col).astype(np.uint8)


def mask_to_image(mask) -> np.ndarray:
  """Mask in [0, 1] (…, H, W) -> uint8 grey RGB (…, H, W, 3); 1 is white."""
  grey = to_uint8(np.asarray(mask, np.float32))
  return np.repeat(grey[..., None], 3, axis=-1)


def labels_to_color(labels) -> np.ndarray:
  """Cityscapes train ids (…, H, W) int -> uint8 RGB (…, H, W, 3), official palette.

  Ids 0..18 are the 19 evaluated classes; 19 (other) and anything outside 0..19
  (e.g. 255 = ignore) are black.
  """
  labels = np.asarray(labels).astype(np.int64)
  ids = np.where((labels >= 0) & (labels < 19), labels, 19)
  return CITYSCAPES_PALETTE[ids]


def sample_sheet(rows: Mapping[str, np.ndarray], separator: int = 2,
                 separator_value: int = 255) -> np.ndarray:
  """Stacks named sequences vertically into one video, (K, H_total, W, 3) uint8.

  rows: name -> (K, H_i, W, 3) (or 1 channel) frames, uint8 or float in [0, 1]; all share
  K and W. Rows appear top to bottom in the dict's order (e.g. 'ground truth', 'warped',
  'refined', 'flow', 'mask'), separated by `separator` pixel lines of `separator_value`,
  so H_total = sum(H_i) + separator * (len(rows) - 1). Frame t of the result shows time
  step t of every row.
  """
  frames = [_to_rgb(x) for x in rows.values()]
  if not frames:
    raise ValueError('sample_sheet needs at least one row')
  k, _, w, _ = frames[0].shape
  for name, x in zip(rows, frames):
    if x.ndim != 4 or x.shape[0] != k or x.shape[2] != w:
      raise ValueError(f'row {name!r} has shape {x.shape}, expected ({k}, H, {w}, 3)')
  line = np.full((k, separator, w, 3), separator_value, np.uint8)
  parts = [frames[0]]
  for x in frames[1:]:
    parts += [line, x]
  return np.concatenate(parts, axis=1)


def sample_sheet_batch(list_of_rows: Sequence[Mapping[str, np.ndarray]],
                       separator: int = 2, separator_value: int = 255) -> np.ndarray:
  """Several clips' sample sheets side by side, (K, H_total, W_total, 3) uint8.

  Each element is a `rows` dict for `sample_sheet`; all sheets must have the same height.
  W_total = sum(W_j) + separator * (len(list_of_rows) - 1).
  """
  sheets = [sample_sheet(rows, separator, separator_value) for rows in list_of_rows]
  if not sheets:
    raise ValueError('sample_sheet_batch needs at least one clip')
  k, h = sheets[0].shape[:2]
  if any(s.shape[:2] != (k, h) for s in sheets):
    raise ValueError(f'sheets differ in length or height: {[s.shape for s in sheets]}')
  line = np.full((k, h, separator, 3), separator_value, np.uint8)
  parts = [sheets[0]]
  for s in sheets[1:]:
    parts += [line, s]
  return np.concatenate(parts, axis=2)


def write_gif(path, frames, fps: float = 4) -> None:
  """Writes frames (K, H, W, 3) uint8 or float in [0, 1] as a GIF looping forever.

  Uses imageio's Pillow plugin. Note that Pillow merges identical consecutive frames into
  one longer frame, so a GIF of a still video may hold fewer frames (same play time).
  """
  iio.imwrite(path, _to_rgb(frames), extension='.gif', duration=1000.0 / fps, loop=0)


def _ffmpeg_executable() -> Optional[str]:
  """The ffmpeg binary that imageio-ffmpeg uses (its bundled one, or $IMAGEIO_FFMPEG_EXE), or
  None where imageio-ffmpeg has none for this platform."""
  try:
    return imageio_ffmpeg.get_ffmpeg_exe()
  except RuntimeError:
    return None


@functools.lru_cache()
def mp4_codec(ffmpeg: str) -> str:
  """'libx264' (H.264) if the ffmpeg binary can encode with it, else 'mpeg4' (MPEG-4 part 2)."""
  probe = subprocess.run([ffmpeg, '-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i',
                          'nullsrc=s=16x16:d=0.1', '-vcodec', 'libx264', '-f', 'null', '-'],
                         stdin=subprocess.DEVNULL, capture_output=True, check=False)
  return 'libx264' if probe.returncode == 0 else 'mpeg4'


def write_mp4(path, frames, fps: float = 4) -> bool:
  """Writes frames (K, H, W, 3) (or 1 channel) uint8 or float in [0, 1] as an MP4, yuv420p.

  Encodes through imageio-ffmpeg's ffmpeg: H.264 with libx264 (CRF 12, about lossless at these
  sizes) when that binary has it, else MPEG-4 part 2 (qscale 2). yuv420p is what browsers and
  players decode, and it needs even sizes: an odd height or width is padded by one replicated
  row / column, so the video is (H + H % 2, W + W % 2). yuv420p also halves the colour
  resolution, so sharp colour edges (flow images) bleed by a pixel.

  Returns False, writing nothing, when imageio-ffmpeg has no ffmpeg binary for this platform;
  True once written. Raises IOError if ffmpeg writes no file.
  """
  ffmpeg = _ffmpeg_executable()
  if ffmpeg is None:
    return False
  frames = _to_rgb(frames)
  if frames.ndim != 4 or frames.shape[0] == 0:
    raise ValueError(f'expected frames (K, H, W, 3) with K >= 1, got shape {frames.shape}')
  pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
  frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode='edge')
  codec = mp4_codec(ffmpeg)
  quality = ['-crf', '12', '-preset', 'medium'] if codec == 'libx264' else ['-qscale:v', '2']
  writer = imageio_ffmpeg.write_frames(
      os.fspath(path), (frames.shape[2], frames.shape[1]), fps=fps, codec=codec,
      pix_fmt_in='rgb24', pix_fmt_out='yuv420p', quality=None, macro_block_size=1,
      output_params=quality + ['-movflags', '+faststart'])
  writer.send(None)  # Starts ffmpeg.
  try:
    for frame in frames:
      writer.send(np.ascontiguousarray(frame))
  finally:
    writer.close()  # Waits for ffmpeg (which reports its errors on stderr).
  if not os.path.exists(path) or os.path.getsize(path) == 0:
    raise IOError(f'{path}: ffmpeg ({ffmpeg}, codec {codec}) wrote no video; see its messages '
                  'above')
  return True
