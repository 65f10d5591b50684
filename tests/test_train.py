"""The trainer: train_and_evaluate, resume, non-finite losses, SIGTERM; evaluation metrics and
loss terms (sharding and multi-host: tests/test_distributed.py)."""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from configs import test as test_config
from seg2vid_jax import evaluation
from seg2vid_jax import input_pipeline
from seg2vid_jax.losses import img2vid as losses
from seg2vid_jax import train
from seg2vid_jax.tasks import img2vid
from seg2vid_jax.models import init_variables
from seg2vid_jax.ops import warp

from tests import test_tasks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_scalars(workdir, tag):
  """{step: value} of a scalar summary written by clu in `workdir`."""
  values = {}
  for path in sorted(glob.glob(os.path.join(workdir, 'events.out.tfevents.*'))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == tag:
          values[event.step] = float(tf.make_ndarray(value.tensor))
  return values


def config_with(**overrides):
  config = test_config.get_config()
  for key, value in overrides.items():
    config[key] = value
  return config


def run_main(workdir, *flags, env=None, **popen):
  """`python -m seg2vid_jax.main` with the test config in a subprocess."""
  cmd = [sys.executable, '-m', 'seg2vid_jax.main', '--config=configs/test.py',
         f'--workdir={workdir}', *flags]
  return subprocess.Popen(cmd, cwd=REPO, env=dict(os.environ, **(env or {})),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
  """Four steps of configs/test.py in one go, every step's losses logged."""
  workdir = str(tmp_path_factory.mktemp('uninterrupted'))
  state = train.train_and_evaluate(config_with(log_every_steps=1), workdir)
  return workdir, jax.device_get(state)


@pytest.fixture(scope='module')
def two_steps(tmp_path_factory):
  """A workdir holding the checkpoint of step 2."""
  workdir = str(tmp_path_factory.mktemp('two_steps'))
  train.train_and_evaluate(config_with(num_train_steps=2, num_eval_clips=0), workdir)
  return workdir


def test_train_and_evaluate_writes_checkpoints_summaries_samples_and_eval(uninterrupted):
  workdir, state = uninterrupted
  assert int(state.step) == 4
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2', '4']
  losses = read_scalars(workdir, 'train/total')
  assert sorted(losses) == [1, 2, 3, 4]
  assert all(np.isfinite(v) and v > 0 for v in losses.values())
  assert read_scalars(workdir, 'train/learning_rate') == pytest.approx(
      {1: 1e-3, 2: 1e-3, 3: 1e-3, 4: 1e-3})
  # The same losses as before the loop and the task were split (tests/test_tasks.py).
  test_tasks.assert_recorded_losses('img2vid', lambda tag: read_scalars(workdir, tag), (1, 2, 3))
  with open(os.path.join(workdir, 'eval', 'step_4.json')) as f:
    results = json.load(f)
  for kind in ('posterior', 'prior_best_of_n', 'copy_first_frame'):
    assert 5 < results[f'psnr/{kind}/mean'] < 60
    assert 0 < results[f'ssim/{kind}/mean'] < 1
  # The synthetic scenes move: the zero-flow baseline is off by more than a pixel by frame 2.
  assert results['epe_px/zero_flow/frame_2'] > results['epe_px/zero_flow/frame_1'] > 0.3
  with open(os.path.join(workdir, 'config.json')) as f:
    saved = json.load(f)  # The whole config, nested and tuple fields included.
  assert saved['num_train_steps'] == 4 and saved['log_every_steps'] == 1
  assert saved['lr_decay_boundaries'] == [] and saved['model'] == json.loads(
      config_with().model.to_json_best_effort())
  gif = os.path.join(workdir, 'samples', 'step_0000004.gif')
  import imageio.v3 as iio  # pylint: disable=g-import-not-at-top
  frames = iio.imread(gif, index=None)
  assert frames.shape[0] == 2 and frames.shape[2] > 2 * 64  # K frames, two clips side by side.


def test_resume_repeats_the_uninterrupted_losses(uninterrupted, two_steps, tmp_path):
  workdir, state = uninterrupted
  resumed_dir = str(tmp_path / 'resumed')
  shutil.copytree(two_steps, resumed_dir)
  resumed = jax.device_get(train.train_and_evaluate(
      config_with(log_every_steps=1, num_eval_clips=0), resumed_dir))
  for step in (3, 4):
    assert read_scalars(resumed_dir, 'train/total')[step] == read_scalars(
        workdir, 'train/total')[step]
  assert os.path.exists(os.path.join(resumed_dir, 'config.resumed_at_2.json'))
  for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(a, b)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(two_steps, tmp_path,
                                                                  monkeypatch):
  """A corrupt batch (NaN pixels) at step 3 of a resumed run: the same train step as the
  other runs (a NaN loss weight would compile another), stopped naming the step."""
  workdir = str(tmp_path / 'nan')
  shutil.copytree(two_steps, workdir)
  create = input_pipeline.create_train_iterator

  def corrupt_first(*args, **kwargs):
    batches = create(*args, **kwargs)
    batch = next(batches)
    yield dict(batch, video=batch['video'] * np.nan)
    yield from batches

  monkeypatch.setattr(input_pipeline, 'create_train_iterator', corrupt_first)
  config = config_with()
  with pytest.raises(train.NonFiniteLossError, match=r'step 3: .*total=nan'):
    train.train_and_evaluate(config, workdir)
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2']
  _, _, state = train.restore_state(config_with(), workdir)
  assert int(state.step) == 2


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
  workdir = str(tmp_path / 'preempted')
  proc = run_main(workdir, '--config.num_train_steps=100000', '--config.log_every_steps=1',
                  '--config.checkpoint_every_steps=100000', '--config.sample_every_steps=0')
  output = []
  for line in proc.stdout:
    output.append(line)
    if 'train/total' in line:  # A step has finished: preempt now.
      proc.send_signal(signal.SIGTERM)
      break
  rest, _ = proc.communicate(timeout=300)
  output.append(rest)
  assert proc.returncode == 0, ''.join(output)[-3000:]
  steps = [int(s) for s in os.listdir(os.path.join(workdir, 'checkpoints'))]
  assert len(steps) == 1 and 1 <= steps[0] < 100000
  assert f'Preempted: checkpoint saved at step {steps[0]}' in ''.join(output)


def test_optional_paths_override_from_the_command_line(tmp_path):
  """--config.vgg_weights=... parses (a None default would not) and a bad path is named."""
  proc = run_main(str(tmp_path / 'w'), '--config.vgg_weights=/nonexistent/vgg19.npz')
  output, _ = proc.communicate(timeout=300)
  assert proc.returncode != 0
  assert 'VGG weights file /nonexistent/vgg19.npz does not exist' in output


# --- Evaluation metrics, samples, loss weights and the extra loss terms (no training) ---

def _np_psnr(pred, gt):
  """PSNR in dB per (clip, frame), data range 1, in plain numpy."""
  mse = np.mean(np.square(np.float64(pred) - np.float64(gt)), axis=(2, 3, 4))
  return 10 * np.log10(1.0 / mse)


def _np_epe(flow_a, flow_b, region=None):
  """Mean end-point distance in pixels per (clip, frame), in plain numpy."""
  h, w = flow_a.shape[2:4]
  d = (np.float64(flow_a) - np.float64(flow_b)) * np.array([(w - 1) / 2, (h - 1) / 2])
  epe = np.sqrt(np.sum(d * d, axis=-1))
  if region is None:
    return epe.mean(axis=(2, 3))
  return np.where(region, epe, 0).sum(axis=(2, 3)) / region.sum(axis=(2, 3))


def test_eval_metrics_values_on_fixed_outputs():
  b, k, h, w, n = 2, 2, 16, 16, 3
  rng = np.random.default_rng(0)
  video = rng.uniform(0.2, 0.8, size=(b, k + 1, h, w, 3)).astype(np.float32)
  gt = video[:, 1:]
  px = np.float32(2.0 / (w - 1))  # One pixel in x, normalised (H = W).
  # The true flow moves everything 1 px right in frame 1, 2 px right and 1 px down in frame 2.
  shifts = [(1, 0), (2, 1)]
  true_flow = np.zeros((b, k, h, w, 2), np.float32)
  for i, (dx, dy) in enumerate(shifts):
    true_flow[:, i, ..., 0], true_flow[:, i, ..., 1] = dx * px, dy * px
  # A 4x4 car (13) in each clip, a person (11) in clip 2; the rest road (0) and sky (10).
  squares = {0: [(4, 4)], 1: [(8, 2), (1, 9)]}  # clip -> top-left corners (row, column)
  labels = np.zeros((b, h, w), np.int32)
  labels[:, 12:] = 10
  labels[0, 4:8, 4:8] = 13
  labels[1, 8:12, 2:6] = 13
  labels[1, 1:5, 9:13] = 11
  valid = np.ones((b, k, h, w), bool)
  valid[:, :, 5] = False        # An invalid row that crosses the objects.
  valid[:, :, :, 0] = False     # The disoccluded left column.
  obj = np.zeros((b, k, h, w), bool)  # The moving-object pixels, by hand.
  for c, corners in squares.items():
    for i, (dx, dy) in enumerate(shifts):
      for r0, c0 in corners:
        obj[c, i, r0 + dy:r0 + dy + 4, c0 + dx:c0 + dx + 4] = True
  obj &= valid
  assert obj[0].sum() == 12 + 12 and obj[1].sum() == 16 + 16 + 16 + 12  # Row 5 is invalid.

  # Prior samples: refined = gt + an offset per (sample, clip, frame); per-clip best samples
  # differ (clip 1: sample 2, clip 2: sample 3), and neither is the per-frame maximum.
  offsets = np.array([[[0.1, 0.01], [0.1, 0.1]],
                      [[0.02, 0.02], [0.01, 0.3]],
                      [[0.05, 0.05], [0.03, 0.03]]], np.float32)
  # Flow errors in px, x only: on object pixels, elsewhere, and 100 px on invalid pixels.
  e_obj = np.array([[[1., 1.], [3., 3.]],
                    [[2., 2.], [0.5, 4.]],
                    [[0.2, 5.], [2., 2.]]], np.float32)
  e_bg = np.array([[[4., 4.], [1., 1.]],
                   [[0.5, 0.6], [2., 2.]],
                   [[3., 0.1], [0.4, 3.]]], np.float32)
  priors, moved = [], []
  for s in range(n):
    err = np.where(obj, e_obj[s][:, :, None, None], e_bg[s][:, :, None, None])
    err = np.where(valid, err, 100.0).astype(np.float32)
    flow = true_flow.copy()
    flow[..., 0] += err * px
    moved.append(flow)
    # mask_fw 0.5: the metrics must use the moved flow, flow x mask_fw.
    priors.append({'refined': gt + offsets[s][:, :, None, None, None], 'flow': 2 * flow,
                   'mask_fw': np.full((b, k, h, w), 0.5, np.float32)})
  posterior_flow = true_flow.copy()
  posterior_flow[..., 0] += 0.5 * px
  posterior = {'refined': gt + np.float32(0.05), 'warped': 0.5 * gt + np.float32(0.25),
               'flow': posterior_flow,
               'mask_fw': np.ones((b, k, h, w), np.float32),
               'mu': rng.normal(size=(b, 1, 8)).astype(np.float32),
               'logvar': rng.normal(size=(b, 1, 8)).astype(np.float32)}
  batch = {'video': video, 'labels': labels, 'flow': true_flow, 'valid': valid}
  out = jax.device_get(jax.jit(img2vid.eval_metrics)(batch, posterior, priors))

  # PSNR: the best of N is one whole sample per clip (sample 2 for clip 1, 3 for clip 2).
  sample_psnr = np.stack([_np_psnr(p['refined'], gt) for p in priors])  # (N, B, K)
  np.testing.assert_allclose(sample_psnr, -20 * np.log10(offsets), rtol=1e-3)
  want = np.stack([sample_psnr[1, 0], sample_psnr[2, 1]])
  np.testing.assert_allclose(out['psnr/prior_best_of_n'], want, rtol=1e-4)
  assert not np.allclose(want, sample_psnr.max(axis=0))  # Not the per-frame maxima.
  np.testing.assert_allclose(out['psnr/prior_sample'], sample_psnr[0], rtol=1e-4)
  np.testing.assert_allclose(out['psnr/posterior'], -20 * np.log10(0.05), rtol=1e-3)
  np.testing.assert_allclose(out['psnr/copy_first_frame'],
                             _np_psnr(np.repeat(video[:, :1], k, axis=1), gt), rtol=1e-4)
  # SSIM best of N: also one sample's whole row per clip.
  sample_ssim = np.stack([np.asarray(evaluation.ssim(p['refined'], gt)) for p in priors])
  for c in range(b):
    assert any(np.allclose(out['ssim/prior_best_of_n'][c], sample_ssim[s, c], rtol=1e-5)
               for s in range(n))
  np.testing.assert_allclose(out['ssim/prior_sample'], sample_ssim[0], rtol=1e-5)

  # End-point errors over the valid pixels: the lowest-error sample per clip.
  sample_epe = np.stack([_np_epe(f, true_flow, valid) for f in moved])
  n_obj, n_valid = obj.sum(axis=(2, 3)), valid.sum(axis=(2, 3))
  np.testing.assert_allclose(sample_epe, (n_obj * e_obj + (n_valid - n_obj) * e_bg) / n_valid,
                             rtol=1e-4)
  best = sample_epe.mean(axis=-1).argmin(axis=0)
  assert list(best) == [1, 0]
  np.testing.assert_allclose(out['epe_px/prior_best_of_n'], sample_epe[best, [0, 1]],
                             rtol=1e-4)
  np.testing.assert_allclose(out['epe_px/prior_sample'], sample_epe[0], rtol=1e-4)
  np.testing.assert_allclose(out['epe_px/posterior'], 0.5, rtol=1e-4)
  np.testing.assert_allclose(out['epe_px/zero_flow'], [[1.0, np.sqrt(5.0)]] * b, rtol=1e-5)
  # ... and over the moving-object pixels only: exactly e_obj, best = sample 1 and sample 3.
  np.testing.assert_allclose(out['epe_obj_px/prior_sample'], e_obj[0], rtol=1e-4)
  np.testing.assert_allclose(out['epe_obj_px/prior_best_of_n'], [[1., 1.], [2., 2.]],
                             rtol=1e-4)
  np.testing.assert_allclose(out['epe_obj_px/posterior'], 0.5, rtol=1e-4)
  np.testing.assert_allclose(out['epe_obj_px/zero_flow'], [[1.0, np.sqrt(5.0)]] * b, rtol=1e-5)

  # The oracle: frame 0 shifted by the exact (whole-pixel) flow, zeros where it leaves the image.
  shifted = np.zeros_like(gt)
  for i, (dx, dy) in enumerate(shifts):
    shifted[:, i, dy:, dx:] = video[:, 0, :h - dy, :w - dx]
  np.testing.assert_allclose(out['psnr/exact_flow_warp'], _np_psnr(shifted, gt), rtol=1e-4)
  # Detail kept: an offset keeps all of it, halving the contrast keeps a quarter.
  np.testing.assert_allclose(out['detail/posterior'], np.ones((b, k)), rtol=1e-4)
  np.testing.assert_allclose(out['detail/posterior_warped'], np.full((b, k), 0.25), rtol=1e-4)
  np.testing.assert_allclose(out['psnr/posterior_warped'],
                             _np_psnr(posterior['warped'], gt), rtol=1e-4)
  np.testing.assert_allclose(out['detail/prior_sample'], np.ones((b, k)), rtol=1e-4)

  # Per-clip KL, the mean forward mask and the spread between the prior samples.
  np.testing.assert_allclose(out['kl_nats/posterior'],
                             evaluation.kl_per_clip(posterior['mu'], posterior['logvar']),
                             rtol=1e-6)
  mu, logvar = np.float64(posterior['mu']), np.float64(posterior['logvar'])
  np.testing.assert_allclose(out['kl_nats/posterior'],
                             0.5 * np.sum(mu ** 2 + np.exp(logvar) - 1 - logvar, axis=(1, 2)),
                             rtol=1e-5)
  assert out['kl_nats/posterior'].shape == (b,)
  np.testing.assert_allclose(out['mask_fw/posterior'], np.ones((b, k)), rtol=1e-6)
  pairs = [(0, 1), (0, 2), (1, 2)]
  np.testing.assert_allclose(
      out['spread/prior_pixels'],
      np.mean([np.abs(offsets[i] - offsets[j]) for i, j in pairs], axis=0), rtol=1e-4)
  np.testing.assert_allclose(out['spread/prior_flow_px'],
                             np.mean([_np_epe(moved[i], moved[j]) for i, j in pairs], axis=0),
                             rtol=1e-4)
  # Through the accumulator: per-clip KL gives only a mean.
  summary = evaluation.summarize(out)
  assert 'kl_nats/posterior/mean' in summary and 'kl_nats/posterior/frame_1' not in summary
  assert summary['psnr/prior_best_of_n/frame_2'] == pytest.approx(want[:, 1].mean(), rel=1e-4)


def test_eval_metrics_without_flow_or_priors():
  b, k, h, w = 1, 2, 16, 16
  video = np.random.default_rng(1).uniform(size=(b, k + 1, h, w, 3)).astype(np.float32)
  posterior = {'refined': video[:, 1:], 'warped': video[:, 1:],
               'flow': np.zeros((b, k, h, w, 2), np.float32),
               'mask_fw': np.full((b, k, h, w), 0.25, np.float32),
               'mu': np.zeros((b, 1, 8), np.float32), 'logvar': np.zeros((b, 1, 8), np.float32)}
  out = jax.device_get(img2vid.eval_metrics({'video': video}, posterior, []))
  assert set(out) == {'kl_nats/posterior', 'mask_fw/posterior'} | {
      f'{metric}/{kind}' for metric in ('psnr', 'ssim', 'detail')
      for kind in ('posterior', 'posterior_warped', 'copy_first_frame')}
  np.testing.assert_array_equal(out['kl_nats/posterior'], [0.0])
  np.testing.assert_allclose(out['mask_fw/posterior'], [[0.25, 0.25]])
  assert np.all(np.isinf(out['psnr/posterior']))


@pytest.fixture(scope='module')
def tiny_model():
  """The configs/test.py model, its initial variables and a random batch of 2 clips."""
  config = test_config.get_config()
  model = img2vid.create_model(config)
  variables = init_variables(model, jax.random.key(0))
  rng = np.random.default_rng(0)
  b, t = 2, config.num_frames
  h, w = config.image_size
  video = rng.uniform(size=(b, t, h, w, 3)).astype(np.float32)
  labels = np.eye(20, dtype=np.float32)[rng.integers(0, 20, size=(b, h, w))]
  return model, variables, {'video': video, 'label_onehot': labels}


def test_generate_samples_posterior_is_z_mu_and_priors_use_prior_latents(tiny_model):
  model, variables, batch = tiny_model

  def run(variables, batch, rng, prior_rng):
    """Both sampling modes and the reference applies, as one program (compiles once)."""
    posterior, priors = img2vid.generate_samples(model, variables, batch, rng, 2)
    posterior2, shared = img2vid.generate_samples(model, variables, batch, rng, 2, prior_rng,
                                                shared_prior=True)
    noise_rng, latent_rng = jax.random.split(rng)
    noise = jax.random.normal(noise_rng, batch['video'][:, 0].shape)
    # The reconstruction with z = mu of the same clip (mu from this very call), no eps.
    ref = model.apply(variables, batch['video'], batch['label_onehot'], noise,
                      z=posterior['mu'], train=False)
    zs = img2vid.prior_latents(model, latent_rng, 2, 2)
    ref_prior = model.apply(variables, batch['video'][:, :1], batch['label_onehot'], noise,
                            zs[1])
    want_shared = img2vid.prior_latents(model, prior_rng, 2, 2, shared=True)
    return posterior, priors, posterior2, shared, ref, zs, ref_prior, want_shared

  (posterior, priors, posterior2, shared, ref, zs, ref_prior, want_shared) = jax.device_get(
      jax.jit(run)(variables, batch, jax.random.key(5), jax.random.key(7)))
  np.testing.assert_array_equal(posterior['z'], posterior['mu'])
  assert posterior['mu'].shape == (2,) + model.latent_shape
  for name in ('refined', 'warped', 'flow', 'mask_fw', 'mu', 'logvar'):
    np.testing.assert_allclose(posterior[name], ref[name], rtol=1e-5, atol=1e-6, err_msg=name)
  # The priors: z from prior_latents, first frame only (no mu), the same refinement noise.
  assert len(priors) == 2
  for prior, z in zip(priors, zs):
    np.testing.assert_array_equal(prior['z'], z)
    assert prior['mu'] is None and prior['logvar'] is None
  np.testing.assert_allclose(priors[1]['refined'], ref_prior['refined'], rtol=1e-5, atol=1e-6)
  assert not np.allclose(zs[0], zs[1])
  assert not np.allclose(zs[0][0], zs[0][1])  # Not shared: one z per clip.
  # shared_prior with a given prior_rng: sample i has one z for every clip (and batch); the
  # posterior does not depend on it.
  np.testing.assert_array_equal(posterior2['refined'], posterior['refined'])
  for prior, z in zip(shared, want_shared):
    np.testing.assert_array_equal(prior['z'], z)
    np.testing.assert_array_equal(prior['z'][0], prior['z'][1])
  assert not np.allclose(shared[0]['z'], shared[1]['z'])


def test_prior_latents_shapes_and_sharing():
  model = img2vid.create_model(test_config.get_config())
  rng = jax.random.key(3)
  zs = img2vid.prior_latents(model, rng, 3, 4)
  assert len(zs) == 4 and all(z.shape == (3,) + model.latent_shape for z in zs)
  # Sample i is fold_in(rng, i): the same draws whatever num_samples.
  np.testing.assert_array_equal(img2vid.prior_latents(model, rng, 3, 2)[1], zs[1])
  shared = img2vid.prior_latents(model, rng, 3, 2, shared=True)
  other_batch = img2vid.prior_latents(model, rng, 5, 2, shared=True)
  for i in range(2):
    assert shared[i].shape == (3,) + model.latent_shape
    np.testing.assert_array_equal(shared[i][0], shared[i][2])
    np.testing.assert_array_equal(other_batch[i][4], shared[i][0])
  z = np.asarray(img2vid.prior_latents(model, rng, 64, 1)[0])
  assert abs(z.mean()) < 0.05 and abs(z.std() - 1) < 0.05  # N(0, I)


def test_loss_weights_kl_warmup_and_overrides():
  config = test_config.get_config()
  config.kl_warmup_steps = 0
  weights = img2vid.loss_weights(config, 50)
  assert weights == losses.WEIGHTS and weights['kld'] == 0.1
  config.kl_warmup_steps = 100
  assert float(img2vid.loss_weights(config, 0)['kld']) == 0.0
  assert float(img2vid.loss_weights(config, 50)['kld']) == pytest.approx(0.05, rel=1e-6)
  assert float(img2vid.loss_weights(config, 100)['kld']) == pytest.approx(0.1, rel=1e-6)
  assert float(img2vid.loss_weights(config, 1000)['kld']) == pytest.approx(0.1, rel=1e-6)
  # Under jit with a traced step, as in the train step.
  jitted = jax.jit(lambda s: img2vid.loss_weights(config, s)['kld'])
  assert float(jitted(np.int32(25))) == pytest.approx(0.025, rel=1e-6)
  config.loss_weights = {'photometric': 1.0, 'recon': 3.0}
  weights = img2vid.loss_weights(config, 50)
  assert weights['photometric'] == 1.0 and weights['recon'] == 3.0
  assert float(weights['kld']) == pytest.approx(0.05, rel=1e-6)
  assert weights['vgg'] == losses.WEIGHTS['vgg']


def test_learning_rate_schedules_constant_cosine_and_piecewise():
  config = test_config.get_config()
  config.learning_rate, config.num_train_steps = 1e-3, 100
  assert float(img2vid.learning_rate_schedule(config)(99)) == pytest.approx(1e-3)
  config.lr_schedule, config.warmup_steps = 'cosine', 10
  schedule = img2vid.learning_rate_schedule(config)
  assert float(schedule(0)) == 0.0 and float(schedule(10)) == pytest.approx(1e-3)
  assert float(schedule(100)) == pytest.approx(0.0, abs=1e-9)
  config.lr_schedule, config.lr_decay_boundaries, config.lr_decay_factor = 'piecewise', (40, 70), 0.1
  schedule = img2vid.learning_rate_schedule(config)
  assert [float(schedule(s)) for s in (0, 39)] == pytest.approx([1e-3, 1e-3])
  assert [float(schedule(s)) for s in (40, 69, 70, 99)] == pytest.approx([1e-4, 1e-4, 1e-5, 1e-5])
  for bad in ((), (70, 40), (0,)):
    config.lr_decay_boundaries = bad
    with pytest.raises(ValueError, match='lr_decay_boundaries'):
      img2vid.learning_rate_schedule(config)
  config.lr_schedule = 'linear'
  with pytest.raises(ValueError, match="lr_schedule='linear'"):
    img2vid.learning_rate_schedule(config)


def test_kld_loss_published_formula_and_free_nats():
  mu = np.zeros((2, 1, 4), np.float32)
  logvar = np.zeros((2, 1, 4), np.float32)
  mu[0, 0, 0] = 2.0              # clip 1: KL = 0.5 * 4 = 2 nats
  mu[1, 0, 1] = np.sqrt(20.0)    # clip 2: KL = 10 nats
  np.testing.assert_allclose(losses.kld_loss(mu, logvar), 12.0 / 1000, rtol=1e-6)
  np.testing.assert_allclose(losses.kld_loss(mu, logvar, 0.0), 12.0 / 1000, rtol=1e-6)
  rng = np.random.default_rng(2)
  m, lv = rng.normal(size=(3, 2, 5)), rng.normal(size=(3, 2, 5))
  np.testing.assert_allclose(losses.kld_loss(m, lv),
                             -0.5 * np.sum(1 + lv - m ** 2 - np.exp(lv)) / 1000, rtol=1e-5)
  # 5 free nats: clip 1 counts 5 and gets no gradient; clip 2 counts its 10.
  np.testing.assert_allclose(losses.kld_loss(mu, logvar, 5.0), 15.0 / 1000, rtol=1e-6)
  g_mu, g_logvar = jax.grad(losses.kld_loss, argnums=(0, 1))(mu, logvar, 5.0)
  np.testing.assert_array_equal(g_mu[0], 0.0)
  np.testing.assert_array_equal(g_logvar[0], 0.0)
  np.testing.assert_allclose(g_mu[1], mu[1] / 1000, rtol=1e-6, atol=1e-9)
  assert np.abs(g_mu[1]).max() > 0


_photometric = jax.jit(losses.photometric_loss, static_argnames='scales')


def _fake_outputs(video, flow, mask=None):
  """Img2Vid-like outputs for a given forward flow: warped = warp(I0, flow x mask_fw)."""
  b, t, h, w, c = video.shape
  k = t - 1
  mask = np.ones((b, k, h, w), np.float32) if mask is None else mask
  i0 = jnp.broadcast_to(jnp.asarray(video[:, :1]), (b, k, h, w, c))
  warped = jax.jit(warp)(i0, jnp.asarray(flow) * mask[..., None])
  return {'flow': flow, 'mask_fw': mask, 'warped': warped, 'refined': warped,
          'flow_back': -flow, 'mask_bw': mask,
          'mu': np.zeros((b, 1, 8), np.float32), 'logvar': np.zeros((b, 1, 8), np.float32)}


def test_objective_rejects_unknown_terms_and_adds_photometric_when_weighted():
  with pytest.raises(ValueError, match='bogus'):
    losses.objective({}, np.zeros((1, 3, 16, 16, 3), np.float32), weights={'bogus': 1.0})
  video = np.random.default_rng(3).uniform(size=(1, 3, 16, 16, 3)).astype(np.float32)
  outputs = _fake_outputs(video, np.zeros((1, 2, 16, 16, 2), np.float32))
  assert 'photometric' not in jax.eval_shape(losses.objective, outputs, video)
  terms = jax.jit(lambda o, v: losses.objective(o, v, weights={'photometric': 2.0}))(
      outputs, video)
  np.testing.assert_allclose(terms['photometric'], _photometric(outputs, video),
                             rtol=1e-6)
  weights = dict(losses.WEIGHTS, photometric=2.0)
  np.testing.assert_allclose(
      terms['total'], sum(weights[n] * v for n, v in terms.items() if n != 'total'), rtol=1e-5)


def test_photometric_loss_zero_for_a_still_clip_and_positive_otherwise():
  b, k, h, w = 2, 2, 16, 16
  rng = np.random.default_rng(4)
  i0 = rng.uniform(size=(b, 1, h, w, 3)).astype(np.float32)
  still = np.repeat(i0, k + 1, axis=1)
  zero = np.zeros((b, k, h, w, 2), np.float32)
  loss = float(_photometric(_fake_outputs(still, zero), still))
  assert loss == pytest.approx(0.0, abs=1e-6)
  moving = still.copy()
  moving[:, 1:] = rng.uniform(size=(b, k, h, w, 3))
  assert float(_photometric(_fake_outputs(moving, zero), moving)) > 0.1
  # A still clip but a flow that moves: also wrong.
  flow = np.full((b, k, h, w, 2), 3 * 2.0 / (w - 1), np.float32)
  assert float(_photometric(_fake_outputs(still, flow), still)) > 0.05
  # With the masks closed, the flow does not move anything: zero again.
  closed = np.zeros((b, k, h, w), np.float32)
  assert float(_photometric(_fake_outputs(still, flow, closed), still)) == (
      pytest.approx(0.0, abs=1e-6))


def test_photometric_loss_scale_1_vanishes_for_the_exact_shift_flow():
  b, k, h, w = 1, 2, 16, 16
  rng = np.random.default_rng(5)
  i0 = rng.uniform(size=(h, w, 3)).astype(np.float32)
  shifts = [(2, 0), (1, -3)]  # (dx, dy) px: frame k(p) = I0(p - d)
  video = np.zeros((b, k + 1, h, w, 3), np.float32)
  video[0, 0] = i0
  flow = np.zeros((b, k, h, w, 2), np.float32)
  border = np.zeros((b, k, h, w), bool)  # Pixels whose source p - d is outside the image.
  for i, (dx, dy) in enumerate(shifts):
    video[0, i + 1] = np.roll(i0, (dy, dx), axis=(0, 1))  # Content wraps in at the border.
    flow[0, i, ..., 0], flow[0, i, ..., 1] = dx * 2.0 / (w - 1), dy * 2.0 / (h - 1)
    ys, xs = np.mgrid[:h, :w]
    border[0, i] = (xs - dx < 0) | (xs - dx >= w) | (ys - dy < 0) | (ys - dy >= h)
  outputs = _fake_outputs(video, flow)
  # Interior: the warp is exact; border: the warp gives 0 (outside), the frame wrapped content.
  warped = np.asarray(outputs['warped'])
  np.testing.assert_allclose(warped[~border], video[:, 1:][~border], atol=1e-5)
  want = np.where(border[..., None], video[:, 1:], 0.0).sum() / video[:, 1:].size
  got = float(_photometric(outputs, video, scales=(1,)))
  assert got == pytest.approx(want, rel=1e-4)
  # With a zero-filled shift (nothing wraps in) the scale-1 part is ~0 everywhere.
  zero_filled = video.copy()
  zero_filled[:, 1:][border] = 0.0
  assert float(_photometric(outputs, zero_filled, scales=(1,))) == pytest.approx(
      0.0, abs=1e-6)
  # The full pyramid adds the (inexact) coarser levels on top.
  assert float(_photometric(outputs, zero_filled)) > 0.0


def test_supervised_flow_term_needs_the_true_flow_and_measures_it():
  b, k, h, w = 2, 2, 9, 17
  video = np.random.default_rng(6).uniform(size=(b, k + 1, h, w, 3)).astype(np.float32)
  true = np.zeros((b, k, h, w, 2), np.float32)
  pred = true.copy()
  pred[..., 0] = 3 * 2.0 / (w - 1)  # 3 px in x ...
  pred[..., 1] = 4 * 2.0 / (h - 1)  # ... and 4 px in y: 5 px end-point error everywhere.
  valid = np.ones((b, k, h, w), bool)
  valid[0, 0, :4] = False
  pred[0, 0, :4] = 100.0  # Far off, but not valid: not counted.
  outputs = _fake_outputs(video, pred)
  with pytest.raises(ValueError, match='flow_supervised needs the exact flow'):
    losses.objective(outputs, video, weights={'flow_supervised': 1.0})
  terms = losses.objective(outputs, video, weights={'flow_supervised': 2.0}, flow_true=true,
                           valid=valid)
  assert float(terms['flow_supervised']) == pytest.approx(5.0, rel=1e-5)
  weights = dict(losses.WEIGHTS, flow_supervised=2.0)
  np.testing.assert_allclose(
      terms['total'], sum(weights[n] * v for n, v in terms.items() if n != 'total'), rtol=1e-5)
  outputs['flow'] = true
  # The exact flow costs only the 1e-6 inside the square root that keeps its gradient finite.
  assert float(losses.flow_supervised_loss(outputs, true, valid)) == pytest.approx(1e-3, rel=1e-3)


def test_object_flow_term_counts_only_moving_object_pixels():
  b, k, h, w = 1, 2, 8, 8
  video = np.zeros((b, k + 1, h, w, 3), np.float32)
  true = np.zeros((b, k, h, w, 2), np.float32)  # Static: each pixel's source is itself.
  pred = np.zeros_like(true)
  pred[..., 0] = 1 * 2.0 / (w - 1)  # 1 px error everywhere ...
  labels = np.zeros((b, h, w), np.int32)
  labels[0, 2:4, 2:5] = 13  # ... a car (train id 13) on 6 pixels, where the error is 3 px.
  pred[:, :, 2:4, 2:5, 0] = 3 * 2.0 / (w - 1)
  valid = np.ones((b, k, h, w), bool)
  outputs = _fake_outputs(video, pred)
  with pytest.raises(ValueError, match='flow_supervised_objects needs'):
    losses.objective(outputs, video, weights={'flow_supervised_objects': 1.0}, flow_true=true,
                     valid=valid)
  terms = losses.objective(outputs, video, weights={'flow_supervised_objects': 1.0},
                           flow_true=true, valid=valid, labels=labels)
  assert float(terms['flow_supervised_objects']) == pytest.approx(3.0, rel=1e-4)
  # Without objects the term is 0, not NaN.
  assert float(losses.flow_supervised_objects_loss(outputs, true, valid, 0 * labels)) == 0.0


def test_image_only_grayscale_model_trains_evaluates_and_generates_without_labels(tmp_path):
  """The image-only model (KTH's, grayscale) through the same trainer, evaluation and
  generation: no label map anywhere, one channel in and out."""
  from seg2vid_jax import generate  # pylint: disable=g-import-not-at-top
  config = config_with(num_train_steps=2, log_every_steps=1, sample_every_steps=0, channels=1)
  config.model.num_classes = 0
  config.model.channels = 1
  workdir = str(tmp_path / 'w')
  state = jax.device_get(train.train_and_evaluate(config, workdir))
  assert state.params['encoder']['econv1']['main_0']['kernel'].shape[2] == 1  # I0 only.
  assert state.params['motion_net']['main_0']['kernel'].shape[2] == 1 + config.num_frames - 1
  totals = read_scalars(workdir, 'train/total')
  assert sorted(totals) == [1, 2] and all(np.isfinite(list(totals.values())))
  result = json.load(open(os.path.join(workdir, 'eval', 'step_2.json')))
  assert np.isfinite(result['psnr/posterior/mean'])
  assert 5 < result['psnr/copy_first_frame/mean'] < 60
  frame = str(tmp_path / 'frame.png')
  texture = np.random.default_rng(0).integers(0, 256, (64, 64, 1), dtype=np.uint8)
  tf.io.write_file(frame, tf.io.encode_png(texture))
  with pytest.raises(ValueError, match='generates from --first_frame alone'):
    generate.generate_from_files(config, workdir, 'labels.png', frame, 2, None, 0)
  samples = generate.generate_from_files(config, workdir, None, frame, 2,
                                         str(tmp_path / 'out'), 0)
  assert samples['refined'].shape == (2, 2, 64, 64, 1) and 'labels' not in samples
  assert os.path.exists(tmp_path / 'out' / 'sample_1.gif')


def test_train_posterior_mean_trains_with_z_mu_and_the_default_samples(tiny_model):
  """config.train_posterior_mean (the deterministic probe of docs/ABLATION.md): the step's
  losses are those of z = mu; by default (published) of z = mu + sigma·eps."""
  model, _, batch = tiny_model
  config = test_config.get_config()
  state = img2vid.create_train_state(config, model, jax.random.key(0))
  weights = img2vid.loss_weights(config, 0)

  def run(state, batch):
    step = lambda mean: img2vid.train_step(state, batch, None, seed=3, weights=weights,
                                           posterior_mean=mean)[1]['total']
    variables = {'params': state.params, 'batch_stats': state.batch_stats}
    outputs, _ = model.apply(variables, batch['video'], batch['label_onehot'], train=True,
                             posterior_mean=True, rngs=img2vid.step_rngs(3, state.step),
                             mutable=['batch_stats'])
    return step(True), step(False), losses.objective(outputs, batch['video'], None,
                                                     weights)['total']

  mean, sampled, expected = jax.device_get(jax.jit(run)(state, batch))
  np.testing.assert_allclose(mean, expected, rtol=1e-6)
  assert abs(sampled - mean) > 1e-4 * abs(mean)
  assert config.get('train_posterior_mean') is False  # configs/default.py: published.


def test_a_term_weighted_zero_cannot_make_the_total_non_finite():
  video = np.random.default_rng(4).uniform(size=(1, 3, 16, 16, 3)).astype(np.float32)
  outputs = _fake_outputs(video, np.zeros((1, 2, 16, 16, 2), np.float32))
  outputs['logvar'] = np.full_like(outputs['logvar'], 1e3)  # exp overflows: KL = inf.
  off = losses.objective(outputs, video, weights={'kld': 0.0})
  assert 'kld' not in off and np.isfinite(off['total'])
  train.check_finite(1, off)  # The terms that remain do not stop training.
  assert not np.isfinite(losses.objective(outputs, video, weights={'kld': 1e-3})['total'])
