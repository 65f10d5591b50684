"""Tests of the synthetic street clips: exact flow, semantic motion, validity, determinism."""

import os

os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')

import jax.numpy as jnp
import numpy as np
import pytest

from seg2vid_jax.data import synthetic
from seg2vid_jax.ops import flow_to_pixels, warp

H, W, T = 128, 256, 5
SEEDS = range(6)


@pytest.fixture(scope='module')
def clips():
  return [synthetic.make_clip(seed, H, W, T) for seed in SEEDS]


def _warp_errors(clip):
  """Per-pixel |warp(frame 0, flow[t-1]) - frame t|, averaged over RGB, in [0, 1] units."""
  video = clip['video'].astype(np.float32) / 255.0
  frames0 = jnp.broadcast_to(video[0], video[1:].shape)
  warped = np.asarray(warp(frames0, jnp.asarray(clip['flow'])))
  return np.abs(warped - video[1:]).mean(-1)


def test_shapes_and_dtypes(clips):
  clip = clips[0]
  assert clip['video'].shape == (T, H, W, 3) and clip['video'].dtype == np.uint8
  assert clip['labels'].shape == (T, H, W) and clip['labels'].dtype == np.int32
  assert clip['flow'].shape == (T - 1, H, W, 2) and clip['flow'].dtype == np.float32
  assert clip['valid'].shape == (T - 1, H, W) and clip['valid'].dtype == bool
  ids = set()
  for c in clips:
    ids |= set(np.unique(c['labels']).tolist())
  assert {0, 1, 2, 8, 10, 11, 13} <= ids <= set(range(19))


def test_warping_frame0_with_flow_reproduces_frame_t(clips):
  """The flow is exact: bilinear warping of frame 0 gives frame t on valid pixels.

  Reached: mean error ~0.012 (in [0, 1] units, i.e. ~3/255) over valid pixels at 128x256; the
  rest is bilinear interpolation of sharp texture edges and uint8 rounding.
  """
  valid_errors = []
  for clip in clips:
    errors = _warp_errors(clip)
    valid = clip['valid']
    valid_errors.append(errors[valid].mean())
    assert errors[valid].mean() < 0.03
    # Where the flow is flagged invalid the warp does not explain the frame.
    assert errors[~valid].mean() > 5 * errors[valid].mean()
  assert np.mean(valid_errors) < 0.02, valid_errors


def test_single_frame_has_empty_flow():
  clip = synthetic.make_clip(3, 32, 48, 1)
  assert clip['flow'].shape == (0, 32, 48, 2) and clip['valid'].shape == (0, 32, 48)


def test_motion_is_nontrivial_and_cars_outrun_people(clips):
  car_speed, person_speed, mean_speed = [], [], []
  for clip in clips:
    # Per-frame displacement of what frame 1 shows (flow 0 -> 1), in pixels.
    pixels = np.linalg.norm(np.asarray(flow_to_pixels(jnp.asarray(clip['flow'][0]))), axis=-1)
    labels = clip['labels'][1]
    mean_speed.append(pixels.mean())
    car_speed.append(pixels[labels == synthetic.CAR].mean())
    person_speed.append(pixels[labels == synthetic.PERSON].mean())
  assert np.mean(mean_speed) > 1.0, mean_speed
  assert min(mean_speed) > 0.3, mean_speed
  assert np.nanmean(car_speed) > 1.5 * np.nanmean(person_speed), (car_speed, person_speed)


def test_valid_has_some_false_and_mostly_true(clips):
  for clip in clips:
    fraction = clip['valid'].mean()
    assert 0.8 < fraction < 0.995, fraction
    assert not clip['valid'][-1].all()
  # Validity only shrinks with time here: more is disoccluded or has left the view later on.
  assert np.mean([c['valid'][-1].mean() for c in clips]) < np.mean(
      [c['valid'][0].mean() for c in clips])


def test_classes_have_high_frequency_texture(clips):
  """Inside each class region the image has detail finer than a 3x3 box blur."""
  for clip in clips[:3]:
    frame = clip['video'][0].astype(np.float32) / 255.0
    blur = sum(np.roll(np.roll(frame, dy, 0), dx, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    detail = np.abs(frame - blur / 9.0).mean(-1)
    labels = clip['labels'][0]
    interior = np.ones_like(labels, bool)  # Pixels whose 3x3 neighbourhood is one class.
    for dy in (-1, 0, 1):
      for dx in (-1, 0, 1):
        interior &= np.roll(np.roll(labels, dy, 0), dx, 1) == labels
    for cls in (synthetic.ROAD, synthetic.BUILDING, synthetic.VEGETATION):
      region = interior & (labels == cls)
      if region.sum() > 100:
        assert detail[region].mean() > 0.006, (cls, detail[region].mean())


def test_same_seed_same_clip_and_seeds_differ():
  a = synthetic.make_clip(11, 32, 64, 3)
  b = synthetic.make_clip(11, 32, 64, 3)
  c = synthetic.make_clip(12, 32, 64, 3)
  d = synthetic.make_clip((11, 0, 1), 32, 64, 3)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])
  assert not np.array_equal(a['video'], c['video'])
  assert not np.array_equal(a['video'], d['video'])


def test_bad_arguments():
  with pytest.raises(ValueError, match='frame size 8x64 is too small'):
    synthetic.make_clip(0, 8, 64, 3)
  with pytest.raises(ValueError, match='num_frames=0'):
    synthetic.make_clip(0, 32, 32, 0)
