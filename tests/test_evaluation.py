"""Tests of the evaluation metrics: known values, not only shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seg2vid_jax import evaluation


def _video(seed, b=2, k=3, h=16, w=16, c=3):
  return np.random.default_rng(seed).uniform(size=(b, k, h, w, c)).astype(np.float32)


def test_psnr_identical_is_inf_and_offset_gives_known_value():
  target = np.full((2, 3, 8, 8, 3), 0.5, np.float32)
  assert np.all(np.isinf(np.asarray(evaluation.psnr(target, target))))
  # MSE 0.01 -> -10 log10(0.01) = 20 dB, for every (clip, frame).
  got = np.asarray(jax.jit(evaluation.psnr)(target + 0.1, target))
  assert got.shape == (2, 3)
  np.testing.assert_allclose(got, 20.0, atol=1e-4)


def test_psnr_is_per_frame():
  target = np.full((1, 2, 8, 8, 1), 0.5, np.float32)
  pred = target.copy()
  pred[0, 1] += 0.01  # only frame 2 is off: 40 dB
  got = np.asarray(evaluation.psnr(pred, target))
  assert np.isinf(got[0, 0])
  np.testing.assert_allclose(got[0, 1], 40.0, atol=1e-3)


def test_ssim_identical_is_one_and_noise_is_low():
  a, b = _video(0), _video(1)
  np.testing.assert_allclose(np.asarray(evaluation.ssim(a, a)), 1.0, atol=1e-5)
  unrelated = np.asarray(jax.jit(evaluation.ssim)(a, b))
  assert unrelated.shape == (2, 3)
  assert np.all(unrelated < 0.1)


def test_best_of_n_picks_best_mean_sample_per_clip():
  # N=3 samples, B=2 clips, K=2 frames.
  samples = np.array([
      [[10., 30.], [5., 5.]],   # clip 0 mean 20; clip 1 mean 5
      [[25., 20.], [1., 1.]],   # clip 0 mean 22.5 (best); clip 1 mean 1
      [[12., 12.], [0., 20.]],  # clip 0 mean 12;  clip 1 mean 10 (best)
  ])
  got = np.asarray(evaluation.best_of_n(samples))
  # Whole sample kept per clip, not the per-frame maximum (which would be [25, 30]).
  np.testing.assert_array_equal(got, [[25., 20.], [0., 20.]])
  lowest = np.asarray(evaluation.best_of_n(samples, higher_is_better=False))
  np.testing.assert_array_equal(lowest, [[12., 12.], [1., 1.]])


def test_copy_first_frame_baseline():
  video = _video(2, b=2, k=4)
  pred = np.asarray(evaluation.copy_first_frame_baseline(video))
  assert pred.shape == (2, 3, 16, 16, 3)
  for k in range(3):
    np.testing.assert_array_equal(pred[:, k], video[:, 0])


def test_endpoint_error_is_in_pixels():
  b, k, h, w = 2, 2, 6, 11
  zero = np.zeros((b, k, h, w, 2), np.float32)
  shift_x = zero.copy()
  shift_x[..., 0] = 2.0 / (w - 1)  # one pixel to the right
  np.testing.assert_allclose(np.asarray(evaluation.endpoint_error_px(shift_x, zero)), 1.0,
                             rtol=1e-6)
  shift_xy = zero.copy()
  shift_xy[..., 0] = 3 * 2.0 / (w - 1)
  shift_xy[..., 1] = -4 * 2.0 / (h - 1)  # 3 px right, 4 px up -> 5 px
  got = np.asarray(jax.jit(evaluation.endpoint_error_px)(shift_xy, zero))
  np.testing.assert_allclose(got, 5.0, rtol=1e-6)


def test_endpoint_error_averages_valid_pixels_only():
  b, k, h, w = 1, 2, 4, 5
  pred = np.zeros((b, k, h, w, 2), np.float32)
  pred[:, :, :2, :, 0] = 2.0 / (w - 1)   # top half 1 px off
  pred[:, :, 2:, :, 0] = 20.0 / (w - 1)  # bottom half 10 px off
  valid = np.zeros((b, k, h, w), bool)
  valid[:, 0, :2] = True        # frame 1: top half valid only
  # frame 2: nothing valid -> NaN
  got = np.asarray(evaluation.endpoint_error_px(pred, np.zeros_like(pred), valid))
  np.testing.assert_allclose(got[0, 0], 1.0, rtol=1e-6)
  assert np.isnan(got[0, 1])
  np.testing.assert_allclose(np.asarray(evaluation.endpoint_error_px(pred, 0 * pred)), 5.5,
                             rtol=1e-6)


def test_summarize_per_frame_means_and_mask():
  psnr = np.array([[10., 20.], [30., 40.], [np.inf, -1e9]])  # last row is padding
  mask = np.array([True, True, False])
  got = evaluation.summarize({'psnr': psnr}, mask)
  assert got == {'psnr/frame_1': 20.0, 'psnr/frame_2': 30.0, 'psnr/mean': 25.0}
  assert all(type(v) is float for v in got.values())
  unmasked = evaluation.summarize({'psnr': psnr[:2]})
  assert unmasked == got


def test_accumulator_over_batches_matches_one_batch():
  rng = np.random.default_rng(3)
  values = {'psnr': rng.normal(25, 3, size=(5, 4)), 'ssim': rng.uniform(size=(5, 4))}
  acc = evaluation.MetricAccumulator()
  acc.update({n: v[:3] for n, v in values.items()})
  # Second batch padded from 2 to 3 rows with garbage.
  padded = {n: np.concatenate([v[3:], np.full((1, 4), np.nan)]) for n, v in values.items()}
  acc.update(padded, mask=np.array([True, True, False]))
  got = acc.result()
  want = evaluation.summarize(values)
  assert got.keys() == want.keys()
  for name in want:
    assert got[name] == pytest.approx(want[name], rel=1e-12)
  assert got['ssim/frame_3'] == pytest.approx(values['ssim'][:, 2].mean())
  assert got['psnr/mean'] == pytest.approx(values['psnr'].mean())


def test_accumulator_skips_undefined_nan_values():
  epe = np.array([[1., np.nan], [3., 4.]])
  got = evaluation.summarize({'epe': epe})
  assert got == {'epe/frame_1': 2.0, 'epe/frame_2': 4.0, 'epe/mean': 8.0 / 3.0}


def test_metrics_on_jnp_arrays_under_jit():
  video = jnp.asarray(_video(4, b=1, k=3))
  pred = evaluation.copy_first_frame_baseline(video)
  gt = video[:, 1:]
  out = jax.jit(lambda p, t: {'psnr': evaluation.psnr(p, t), 'ssim': evaluation.ssim(p, t)})(
      pred, gt)
  summary = evaluation.summarize(out)
  assert set(summary) == {f'{m}/{s}' for m in ('psnr', 'ssim')
                          for s in ('frame_1', 'frame_2', 'mean')}
  # Uniform noise frames vs another: MSE = 1/6 -> about 7.8 dB.
  assert summary['psnr/mean'] == pytest.approx(-10 * np.log10(1 / 6), abs=0.3)


# --- moving_object_mask, kl_per_clip, sample_spread, flow_spread_px, per-clip accumulator ---


def _shift_flow(b, k, h, w, shifts_px):
  """Uniform backward flows (B, K, H, W, 2): frame k shows frame 0 moved by shifts_px[k]
  = (dx, dy) whole pixels, i.e. frame_k(p) = frame_0(p - d)."""
  flow = np.zeros((b, k, h, w, 2), np.float32)
  for i, (dx, dy) in enumerate(shifts_px):
    flow[:, i, ..., 0] = dx * 2.0 / (w - 1)
    flow[:, i, ..., 1] = dy * 2.0 / (h - 1)
  return flow


def test_moving_object_mask_is_the_shifted_object_of_frame_0():
  b, k, h, w = 1, 3, 12, 14
  labels = np.zeros((b, h, w), np.int32)
  labels[0, 3:6, 2:5] = 13  # a car, rows 3..5, columns 2..4
  shifts = [(0, 0), (2, 0), (3, -1)]  # frame 3: 3 px right, 1 px up
  flow = _shift_flow(b, k, h, w, shifts)
  valid = np.ones((b, k, h, w), bool)
  got = np.asarray(jax.jit(evaluation.moving_object_mask)(labels, flow, valid))
  assert got.shape == (b, k, h, w) and got.dtype == bool
  for i, (dx, dy) in enumerate(shifts):
    want = np.zeros((h, w), bool)
    want[3 + dy:6 + dy, 2 + dx:5 + dx] = True
    np.testing.assert_array_equal(got[0, i], want, err_msg=f'frame {i + 1}')
  assert got[0, 1].sum() == 9


def test_moving_object_mask_ignores_invalid_pixels_and_background_ids():
  b, k, h, w = 2, 1, 8, 8
  labels = np.zeros((b, h, w), np.int32)
  labels[0, 1:3, 1:3] = 11   # person: an object (first_id)
  labels[0, 5:7, 5:7] = 18   # bicycle: an object (last_id)
  labels[0, 1:3, 5:7] = 10   # sky: background
  labels[0, 5:7, 1:3] = 19   # 'other': not an object
  labels[1] = 13             # clip 2: a car everywhere ...
  flow = _shift_flow(b, k, h, w, [(1, 0)])
  valid = np.ones((b, k, h, w), bool)
  valid[1, 0, :, :4] = False  # ... but its left half invalid (disoccluded)
  got = np.asarray(evaluation.moving_object_mask(labels, flow, valid))
  want0 = np.zeros((h, w), bool)
  want0[1:3, 2:4] = True      # the person moved 1 px right
  want0[5:7, 6:8] = True      # the bicycle moved 1 px right
  np.testing.assert_array_equal(got[0, 0], want0)
  want1 = np.zeros((h, w), bool)
  want1[:, 4:] = True
  np.testing.assert_array_equal(got[1, 0], want1)
  # Custom id range: only the sky counts.
  sky = np.asarray(evaluation.moving_object_mask(labels, flow, valid, first_id=10, last_id=10))
  want_sky = np.zeros((h, w), bool)
  want_sky[1:3, 6:8] = True
  np.testing.assert_array_equal(sky[0, 0], want_sky)
  assert not sky[1].any()


def test_kl_per_clip_known_values():
  z = np.zeros((3, 2, 4), np.float32)
  mu, logvar = z.copy(), z.copy()
  mu[1, 0, 2] = 1.0      # clip 2: mu = 1 in one dimension -> 0.5 nats
  s = 2.0
  logvar[2] = np.log(s * s)  # clip 3: sigma = 2 in all 8 dimensions
  got = np.asarray(jax.jit(evaluation.kl_per_clip)(mu, logvar))
  assert got.shape == (3,)
  want_sigma = 8 * 0.5 * (s * s - 1 - np.log(s * s))
  np.testing.assert_allclose(got, [0.0, 0.5, want_sigma], rtol=1e-6, atol=1e-7)
  rng = np.random.default_rng(0)
  mu, logvar = rng.normal(size=(2, 3, 5)), rng.normal(size=(2, 3, 5))
  want = 0.5 * np.sum(mu ** 2 + np.exp(logvar) - 1 - logvar, axis=(1, 2))
  np.testing.assert_allclose(np.asarray(evaluation.kl_per_clip(mu, logvar)), want, rtol=1e-5)


def test_sample_spread_is_mean_over_pairs_of_mean_abs_difference():
  rng = np.random.default_rng(1)
  samples = rng.uniform(size=(3, 2, 2, 4, 5, 3)).astype(np.float32)  # N, B, K, H, W, C
  got = np.asarray(jax.jit(evaluation.sample_spread)(samples))
  assert got.shape == (2, 2)
  pair = lambda i, j: np.abs(samples[i] - samples[j]).mean(axis=(-3, -2, -1))
  np.testing.assert_allclose(got, (pair(0, 1) + pair(0, 2) + pair(1, 2)) / 3, rtol=1e-6)
  # Constant samples 0, 0.1, 0.4: pairs differ by 0.1, 0.4, 0.3 -> 0.8 / 3.
  const = np.stack([np.full((1, 1, 4, 4, 3), v, np.float32) for v in (0.0, 0.1, 0.4)])
  np.testing.assert_allclose(np.asarray(evaluation.sample_spread(const)), [[0.8 / 3]],
                             rtol=1e-6)
  # Identical samples: the latent has no effect.
  np.testing.assert_array_equal(np.asarray(evaluation.sample_spread(np.stack([samples[0]] * 2))),
                                0.0)


def test_flow_spread_is_in_pixels():
  b, k, h, w = 2, 2, 5, 9
  zero = np.zeros((b, k, h, w, 2), np.float32)
  one_px = zero.copy()
  one_px[..., 0] = 2.0 / (w - 1)     # 1 px right
  five_px = zero.copy()
  five_px[..., 0] = 3 * 2.0 / (w - 1)
  five_px[..., 1] = 4 * 2.0 / (h - 1)  # 3 px right, 4 px down: 5 px from zero
  got = np.asarray(evaluation.flow_spread_px(np.stack([zero, one_px])))
  np.testing.assert_allclose(got, 1.0, rtol=1e-6)
  got = np.asarray(jax.jit(evaluation.flow_spread_px)(np.stack([zero, one_px, five_px])))
  # Pairs: 1 px, 5 px, |(2, 4)| = sqrt(20) px.
  np.testing.assert_allclose(got, (1.0 + 5.0 + np.sqrt(20.0)) / 3, rtol=1e-6)


def test_spreads_need_at_least_two_samples():
  with pytest.raises(ValueError, match='at least 2'):
    evaluation.sample_spread(np.zeros((1, 1, 1, 4, 4, 3), np.float32))
  with pytest.raises(ValueError, match='at least 2'):
    evaluation.flow_spread_px(np.zeros((1, 1, 1, 4, 4, 2), np.float32))


def test_accumulator_per_clip_values_have_only_a_mean():
  acc = evaluation.MetricAccumulator()
  acc.update({'kl': np.array([1.0, 2.0, 3.0]), 'psnr': np.array([[10., 20.], [30., 40.],
                                                                [50., 60.]])})
  # Second batch: the last row is padding (garbage, even inf), one clip's KL undefined.
  acc.update({'kl': np.array([np.nan, 6.0, np.inf]),
              'psnr': np.array([[0., 0.], [0., 0.], [np.inf, np.inf]])},
             mask=np.array([True, True, False]))
  got = acc.result()
  assert set(got) == {'kl/mean', 'psnr/frame_1', 'psnr/frame_2', 'psnr/mean'}
  assert got['kl/mean'] == pytest.approx((1 + 2 + 3 + 6) / 4)
  assert got['psnr/frame_1'] == pytest.approx(90 / 5)
  assert got['psnr/mean'] == pytest.approx(210 / 10)
  assert all(type(v) is float for v in got.values())
  assert evaluation.summarize({'kl': np.array([4.0, 5.0])}) == {'kl/mean': 4.5}


def test_best_of_n_ignores_frames_without_a_value():
  nan = float('nan')
  best = evaluation.best_of_n(jnp.array([[[1.0, nan]], [[0.1, nan]]]), higher_is_better=False)
  np.testing.assert_allclose(np.asarray(best), [[0.1, nan]], rtol=1e-6)


def test_detail_ratio_is_the_laplacian_energy_against_the_true_frame():
  target = np.random.default_rng(0).uniform(size=(1, 3, 8, 8, 3)).astype(np.float32)
  blurred = (target + np.roll(target, 1, axis=2) + np.roll(target, 1, axis=3)) / 3
  pred = np.stack([0.5 * target[:, 0] + 0.25, target[:, 1] + 0.1, blurred[:, 2]], axis=1)
  ratio = np.asarray(evaluation.detail_ratio(pred, target))
  np.testing.assert_allclose(ratio[0, :2], [0.25, 1.0], rtol=1e-5)  # Contrast halved; offset.
  assert 0.1 < ratio[0, 2] < 0.6  # A 3-tap blur keeps part of a white texture's detail.
  flat = np.full_like(target, 0.5)
  assert np.all(np.isnan(evaluation.detail_ratio(pred, flat)))  # No detail to keep.
  np.testing.assert_allclose(evaluation.laplacian_energy(flat), 0.0, atol=1e-12)
