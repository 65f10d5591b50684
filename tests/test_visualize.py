"""Tests of the visualisation helpers: exact colours, layout and files read back."""

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
import pytest

from seg2vid_jax import visualize

H, W = 5, 9


def _uniform_flow(u_px, v_px, h=H, w=W):
  """Constant flow of (u_px, v_px) pixels in normalised units, (h, w, 2)."""
  flow = np.zeros((h, w, 2), np.float32)
  flow[..., 0] = u_px * 2.0 / (w - 1)
  flow[..., 1] = v_px * 2.0 / (h - 1)
  return flow


def test_colorwheel_segments():
  wheel = visualize.middlebury_colorwheel()
  assert wheel.shape == (55, 3)  # 15 + 6 + 4 + 11 + 13 + 6
  np.testing.assert_array_equal(wheel[0], [255, 0, 0])     # red
  np.testing.assert_array_equal(wheel[15], [255, 255, 0])  # yellow
  np.testing.assert_array_equal(wheel[21], [0, 255, 0])    # green
  np.testing.assert_array_equal(wheel[25], [0, 255, 255])  # cyan
  np.testing.assert_array_equal(wheel[36], [0, 0, 255])    # blue
  np.testing.assert_array_equal(wheel[49], [255, 0, 255])  # magenta


def test_flow_to_color_zero_flow_is_white():
  img = visualize.flow_to_color(np.zeros((2, H, W, 2), np.float32))
  assert img.dtype == np.uint8 and img.shape == (2, H, W, 3)
  assert np.all(img == 255)


# Derivation, a = atan2(-v, -u) / pi, fk = (a + 1) / 2 * 54, full magnitude r = 1:
#   +x: a = -1   -> fk = 0    -> wheel[0]                 = (255, 0, 0)
#   -x: a = 0    -> fk = 27   -> wheel[27] (CB, i=2)      = (0, 255 - floor(510/11), 255)
#   +y: a = -1/2 -> fk = 13.5 -> (wheel[13] + wheel[14])/2 = (255, (221 + 238)/2 -> 229, 0)
#   -y: a = 1/2  -> fk = 40.5 -> (wheel[40] + wheel[41])/2 = ((78 + 98)/2, 0, 255)
DIRECTION_COLORS = {
    (1, 0): (255, 0, 0),
    (-1, 0): (0, 209, 255),
    (0, 1): (255, 229, 0),
    (0, -1): (88, 0, 255),
}


@pytest.mark.parametrize('direction, rgb', DIRECTION_COLORS.items())
def test_flow_to_color_axis_directions(direction, rgb):
  img = visualize.flow_to_color(_uniform_flow(3 * direction[0], 3 * direction[1]))
  assert np.all(img == np.array(rgb, np.uint8))
  # The same with an explicit max_flow equal to the magnitude (in pixels).
  img = visualize.flow_to_color(_uniform_flow(*direction), max_flow=1.0)
  assert np.all(img == np.array(rgb, np.uint8))


def test_flow_to_color_directions_distinct_and_sign_of_zero_ignored():
  assert len(set(DIRECTION_COLORS.values())) == 4
  flow = _uniform_flow(2, 0)
  flow[..., 1] = -0.0
  assert np.all(visualize.flow_to_color(flow) == (255, 0, 0))


def test_flow_to_color_magnitude_scaling():
  flow = np.stack([_uniform_flow(4, 0), _uniform_flow(2, 0), _uniform_flow(8, 0)])
  img = visualize.flow_to_color(flow, max_flow=4.0)
  np.testing.assert_array_equal(img[0, 0, 0], (255, 0, 0))          # r = 1
  np.testing.assert_array_equal(img[1, 0, 0], (255, 127, 127))      # r = 0.5: half white
  np.testing.assert_array_equal(img[2, 0, 0], (191, 0, 0))          # r > 1: 0.75 * wheel
  # Without max_flow the largest magnitude in the input (8 px) sets the scale.
  auto = visualize.flow_to_color(flow)
  np.testing.assert_array_equal(auto[2, 0, 0], (255, 0, 0))
  np.testing.assert_array_equal(auto[0, 0, 0], (255, 127, 127))


def test_flow_to_color_uses_pixels_not_normalised_units():
  # Same normalised flow 0.5 in x and y; the image is wider, so x is more pixels.
  flow = np.full((3, 21, 2), 0.5, np.float32)  # 5 px in x, 0.5 px in y
  img = visualize.flow_to_color(flow)
  # Mostly +x (red) with a little +y: between red and the +y yellow, much nearer red.
  r, g, b = img[0, 0]
  assert r == 255 and b == 0 and 0 < g < 60


def test_mask_to_image():
  mask = np.array([[0.0, 0.5, 1.0]])
  img = visualize.mask_to_image(mask)
  assert img.shape == (1, 3, 3) and img.dtype == np.uint8
  np.testing.assert_array_equal(img[0], [[0, 0, 0], [128, 128, 128], [255, 255, 255]])


def test_labels_to_color_palette():
  labels = np.array([[0, 1, 2, 10, 11, 13], [18, 19, 255, 7, 8, 17]])
  img = visualize.labels_to_color(labels)
  assert img.shape == (2, 6, 3) and img.dtype == np.uint8
  np.testing.assert_array_equal(img[0], [(128, 64, 128), (244, 35, 232), (70, 70, 70),
                                         (70, 130, 180), (220, 20, 60), (0, 0, 142)])
  np.testing.assert_array_equal(img[1], [(119, 11, 32), (0, 0, 0), (0, 0, 0),
                                         (220, 220, 0), (107, 142, 35), (0, 0, 230)])
  assert len({tuple(c) for c in visualize.CITYSCAPES_PALETTE}) == 20


def test_sample_sheet_layout():
  k, h, w = 3, 4, 6
  gt = np.zeros((k, h, w, 3), np.uint8)
  gt[1] = 7  # a known frame: time step 1 of the first row
  refined = np.ones((k, h + 2, w, 3), np.float32) * 0.2
  mask = visualize.mask_to_image(np.ones((k, h, w)))
  sheet = visualize.sample_sheet({'ground truth': gt, 'refined': refined, 'mask': mask},
                                 separator=1, separator_value=100)
  assert sheet.shape == (k, h + 1 + (h + 2) + 1 + h, w, 3) and sheet.dtype == np.uint8
  np.testing.assert_array_equal(sheet[1, :h], gt[1])
  np.testing.assert_array_equal(sheet[0, :h], gt[0])
  assert np.all(sheet[:, h] == 100)                       # separator line
  assert np.all(sheet[:, h + 1:2 * h + 3] == 51)          # 0.2 -> 51
  assert np.all(sheet[:, 2 * h + 4:] == 255)              # mask of ones


def test_sample_sheet_batch_tiles_clips():
  k, h, w = 2, 3, 4
  clips = []
  for i in range(3):
    clips.append({'a': np.full((k, h, w, 3), 10 * i, np.uint8),
                  'b': np.full((k, h, w, 3), 10 * i + 1, np.uint8)})
  grid = visualize.sample_sheet_batch(clips, separator=2, separator_value=0)
  assert grid.shape == (k, 2 * h + 2, 3 * w + 2 * 2, 3)
  col = lambda i: slice(i * (w + 2), i * (w + 2) + w)
  assert np.all(grid[:, :h, col(2)] == 20)
  assert np.all(grid[:, h + 2:, col(1)] == 11)
  assert np.all(grid[:, :, w:w + 2] == 0)


def test_sample_sheet_rejects_mismatched_rows():
  with pytest.raises(ValueError):
    visualize.sample_sheet({'a': np.zeros((2, 4, 4, 3)), 'b': np.zeros((3, 4, 4, 3))})


def test_write_gif_round_trip(tmp_path):
  k, h, w = 4, 10, 12
  frames = np.zeros((k, h, w, 3), np.uint8)
  for t in range(k):
    frames[t, :, : 3 * (t + 1)] = (255, 0, 0)  # distinct frames (Pillow merges repeats)
  path = tmp_path / 'clip.gif'
  visualize.write_gif(path, frames, fps=5)
  back = iio.imread(path, index=None)
  assert back.shape[:3] == (k, h, w)
  np.testing.assert_array_equal(back[..., :3], frames)
  meta = iio.immeta(path, index=0)
  assert meta['loop'] == 0 and meta['duration'] == 200


def _read_mp4(path):
  """(meta, frames (N, H, W, 3) uint8) of a video file, decoded by imageio-ffmpeg's ffmpeg."""
  reader = imageio_ffmpeg.read_frames(str(path))
  meta = next(reader)
  w, h = meta['size']
  frames = np.stack([np.frombuffer(b, np.uint8).reshape(h, w, 3) for b in reader])
  return meta, frames


@pytest.mark.parametrize('size', [(10, 12), (9, 11), (33, 47)])
def test_write_mp4_round_trip(tmp_path, size):
  """H.264 (or MPEG-4) yuv420p, odd sizes padded by a replicated row / column; smooth content
  comes back within a few levels, each frame as itself."""
  h, w = size
  yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
  frames = np.stack([np.stack([0.2 + 0.5 * xx + 0.05 * t, 0.7 - 0.4 * yy,
                               np.full_like(xx, 0.1 * t)], -1)
                     for t in range(6)]).astype(np.float32)  # Floats in [0, 1].
  path = tmp_path / 'clip.mp4'
  assert visualize.write_mp4(path, frames, fps=4) is True
  meta, back = _read_mp4(path)
  codec = visualize.mp4_codec(visualize._ffmpeg_executable())
  # libx264 where the ffmpeg has it (the binary bundled with imageio-ffmpeg 0.8.1 does).
  assert meta['codec'].startswith('h264' if codec == 'libx264' else 'mpeg4')
  assert meta['pix_fmt'].startswith('yuv420p')
  assert meta['fps'] == 4
  assert back.shape == (6, h + h % 2, w + w % 2, 3)
  expected = visualize.to_uint8(frames).astype(int)
  error = np.abs(back[:, :h, :w].astype(int) - expected)
  assert error.mean() < 8 and error.max() < 40, (error.mean(), error.max())
  if h % 2:  # The padding row repeats the last row.
    assert np.abs(back[:, h, :w].astype(int) - expected[:, h - 1]).mean() < 8
  # Frame order: every decoded frame is nearest to the frame written at its index.
  distances = np.abs(back[:, None, :h, :w].astype(int) - expected[None]).mean(axis=(2, 3, 4))
  np.testing.assert_array_equal(distances.argmin(axis=1), np.arange(6))


def test_write_mp4_grayscale_and_mpeg4_fallback(tmp_path, monkeypatch):
  frames = np.linspace(0, 255, 5 * 8 * 8).reshape(5, 8, 8, 1).astype(np.uint8)  # One channel.
  monkeypatch.setattr(visualize, 'mp4_codec', lambda ffmpeg: 'mpeg4')
  path = tmp_path / 'grey.mp4'
  assert visualize.write_mp4(path, frames, fps=25)
  meta, back = _read_mp4(path)
  assert meta['codec'].startswith('mpeg4') and back.shape == (5, 8, 8, 3)
  assert np.abs(back.astype(int) - frames.astype(int)).mean() < 8


def test_write_mp4_without_encoder_returns_false(tmp_path, monkeypatch):
  monkeypatch.setattr(visualize, '_ffmpeg_executable', lambda: None)
  path = tmp_path / 'clip.mp4'
  assert visualize.write_mp4(path, np.zeros((2, 4, 4, 3), np.uint8)) is False
  assert not path.exists()
