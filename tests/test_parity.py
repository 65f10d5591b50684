"""Number-for-number parity with the published seg2vid (../shared/parity), both variants.

The published weights are regenerated, converted with `seg2vid_jax.convert.from_torch`, and
the eval pass (BatchNorm on running statistics), the train pass (batch statistics) and every
loss term are compared with the PyTorch model's own outputs.

Tolerances reached (measured on a 2-core x86 CPU, fp32): eval pass <= 1.4e-5 on every output
(warped images 1.4e-5, the same as the warp alone); losses <= 7e-6 relative. The train pass
uses batch statistics, which amplify float reordering (the refinement bottleneck normalises
over 2 samples per frame), so its maximum differences are larger: flows 1.7e-5, warped 4.0e-4,
refined 1.6e-3, while the mean absolute differences stay below 2e-6 (refined: 6.3e-5, as every
pixel depends on that 2-sample bottleneck). The same pass in float64 is 1.6e-4
(warped) and 9.0e-4 (refined) from the reference: about half of the gap is the reference's own
fp32 rounding, none of it a modelling difference.
"""

import functools

import jax
import numpy as np
import pytest

from seg2vid_jax import convert, losses
from tests import parity

VARIANTS = ('w_mask', 'two_path')
# Maximum absolute differences asserted, per pass and output (about 2.5x what we measure).
EVAL_ATOL = dict(warped=5e-5, refined=2e-5, flow=5e-6, flow_back=5e-6, mask_fw=2e-6,
                 mask_bw=2e-6, mu=5e-6, logvar=5e-6)
TRAIN_ATOL = dict(warped=1e-3, refined=4e-3, flow=5e-5, flow_back=5e-5, mask_fw=1e-5,
                  mask_bw=1e-5, mu=2e-5, logvar=2e-5)
TRAIN_MEAN_ATOL = {name: 1e-5 for name in TRAIN_ATOL} | {'refined': 2e-4}
LOSS_RTOL = 1e-4


@functools.lru_cache(maxsize=None)
def run(variant):
  """Converts the regenerated weights and runs both passes and the objective once."""
  ref = parity.reference(variant)
  sd = parity.state_dict(variant)
  model, variables = convert.from_torch(sd, variant, (128, 128))
  vgg_params = convert.vgg_from_torch(sd)
  args = (ref['video'], ref['label_onehot'], ref['noise'], ref['z'])
  eval_out = jax.jit(lambda v, *a: model.apply(v, *a, train=False))(variables, *args)
  train_out, _ = jax.jit(lambda v, *a: model.apply(v, *a, train=True, mutable=['batch_stats']))(
      variables, *args)
  terms = jax.jit(losses.objective)(train_out, ref['video'], vgg_params)
  return ref, jax.device_get(eval_out), jax.device_get(train_out), jax.device_get(terms)


@pytest.mark.parametrize('variant', VARIANTS)
def test_eval_pass_matches_published(variant):
  ref, out, _, _ = run(variant)
  for name, atol in EVAL_ATOL.items():
    np.testing.assert_allclose(out[name], ref['eval'][name], rtol=0, atol=atol, err_msg=name)


@pytest.mark.parametrize('variant', VARIANTS)
def test_train_pass_matches_published(variant):
  ref, _, out, _ = run(variant)
  for name, atol in TRAIN_ATOL.items():
    np.testing.assert_allclose(out[name], ref['train'][name], rtol=0, atol=atol, err_msg=name)
    assert np.mean(np.abs(out[name] - ref['train'][name])) < TRAIN_MEAN_ATOL[name], name


@pytest.mark.parametrize('variant', VARIANTS)
def test_every_loss_term_matches_published(variant):
  ref, _, _, terms = run(variant)
  names = set(losses.WEIGHTS) | {'total'}
  assert set(terms) == names
  for name in sorted(names):
    np.testing.assert_allclose(terms[name], ref[f'loss_{name}'], rtol=LOSS_RTOL, err_msg=name)


@pytest.mark.parametrize('variant', VARIANTS)
def test_losses_of_reference_outputs_match(variant):
  """The objective alone, fed the reference's own outputs: isolates the loss code."""
  ref = parity.reference(variant)
  vgg_params = convert.vgg_from_torch(parity.state_dict(variant))
  terms = jax.jit(losses.objective)(ref['train'], ref['video'], vgg_params)
  for name in sorted(set(losses.WEIGHTS) | {'total'}):
    np.testing.assert_allclose(terms[name], ref[f'loss_{name}'], rtol=2e-6, err_msg=name)


def test_published_weights_and_total():
  """The published weights recombine the fixture's unweighted terms into its total."""
  ref = parity.reference('w_mask')
  total = sum(w * float(ref[f'loss_{n}']) for n, w in losses.WEIGHTS.items())
  np.testing.assert_allclose(total, float(ref['loss_total']), rtol=1e-6)
