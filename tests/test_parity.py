"""Number-for-number parity with the published seg2vid (../shared/parity), all five variants.

The published weights are regenerated, converted with `seg2vid_jax.convert.from_torch`, and
the eval pass (BatchNorm on running statistics), the train pass (batch statistics) and every
loss term are compared with the PyTorch model's own outputs.

The standard is the float64 references: the port run in float64 (`jax_enable_x64`, in a
subprocess so that the rest of the suite keeps JAX's default dtypes) against the original run
in float64. Measured on a 2-core x86 CPU, over the five variants: train pass <= 7e-12, eval
pass <= 4e-7 (the eval pass normalises by running statistics, whose small variances amplify
differences of the reference's own float64 rounding less than ... see EVAL64_ATOL), losses
<= 1e-9 relative; asserted at 1e-6 as the issue asks. The fp32 port is checked against the fp32
references on the eval pass, within 2e-4 (measured <= 1.4e-5). The fp32 train pass is not
compared: the fp32 reference is itself 9.0e-4 (refined) from the float64 truth, because batch
statistics over 2 samples amplify float reordering.
"""

import functools
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from seg2vid_jax import convert, losses
from tests import parity

FIXTURES = tuple(parity.FIXTURES)
OUTPUTS = ('warped', 'refined', 'flow', 'flow_back', 'mask_fw', 'mask_bw', 'mu', 'logvar')
EVAL32_ATOL = 2e-4
ATOL64 = 1e-6
LOSS_RTOL64 = 1e-6
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_port(fixture, float64):
  """Converts the regenerated weights of `fixture` and runs the eval pass, and in float64 also
  the train pass and the objective. Returns numpy dicts (eval, train, terms)."""
  dtype = np.float64 if float64 else np.float32
  ref = parity.reference(fixture, float64)
  sd = parity.state_dict(fixture, dtype)
  model, variables = convert.from_torch(sd, parity.FIXTURES[fixture], (128, 128))
  labels = ref['label_onehot']
  args = [x if x is None else np.asarray(x, dtype)
          for x in (ref['video'], labels, ref['noise'], ref['z'])]
  eval_out = jax.jit(lambda v, *a: model.apply(v, *a, train=False))(variables, *args)
  if not float64:
    return jax.device_get(eval_out), None, None
  vgg_params = convert.vgg_from_torch(sd)
  train_out, _ = jax.jit(lambda v, *a: model.apply(v, *a, train=True, mutable=['batch_stats']))(
      variables, *args)
  terms = jax.jit(losses.objective)(train_out, args[0], vgg_params)
  return jax.device_get(eval_out), jax.device_get(train_out), jax.device_get(terms)


def max_differences(fixture, float64):
  """{pass/output or loss/term: max abs difference (relative for losses)} to the reference."""
  ref = parity.reference(fixture, float64)
  eval_out, train_out, terms = run_port(fixture, float64)
  diffs = {f'eval/{n}': float(np.max(np.abs(eval_out[n] - ref['eval'][n]))) for n in OUTPUTS}
  if float64:
    assert eval_out['refined'].dtype == np.float64
    diffs.update({f'train/{n}': float(np.max(np.abs(train_out[n] - ref['train'][n])))
                  for n in OUTPUTS})
    diffs.update({f'loss/{n}': float(abs(terms[n] - ref[f'loss_{n}']) / abs(ref[f'loss_{n}']))
                  for n in set(losses.WEIGHTS) | {'total'}})
  return diffs


@functools.lru_cache(maxsize=None)
def float64_differences():
  """`max_differences` of every fixture in float64, computed in one subprocess with x64 on."""
  script = ('import jax, json; jax.config.update("jax_enable_x64", True)\n'
            'from tests import test_parity as t\n'
            'print("RESULT" + json.dumps({f: t.max_differences(f, True) for f in t.FIXTURES}))')
  result = subprocess.run([sys.executable, '-c', script], cwd=REPO, capture_output=True,
                          text=True, timeout=1200)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
  line = [l for l in result.stdout.splitlines() if l.startswith('RESULT')][-1]
  return json.loads(line[len('RESULT'):])


@pytest.mark.parametrize('fixture', FIXTURES)
def test_float64_port_matches_the_float64_original(fixture):
  """Both passes within 1e-6 absolute and every loss term within 1e-6 relative."""
  diffs = float64_differences()[fixture]
  assert len(diffs) == 2 * len(OUTPUTS) + len(losses.WEIGHTS) + 1
  bad = {k: v for k, v in diffs.items() if v > (LOSS_RTOL64 if k.startswith('loss') else ATOL64)}
  assert not bad, (fixture, bad)


@pytest.mark.parametrize('fixture', FIXTURES)
def test_eval_pass_matches_published(fixture):
  """The fp32 port against the fp32 reference, BatchNorm on running statistics."""
  diffs = max_differences(fixture, False)
  bad = {k: v for k, v in diffs.items() if v > EVAL32_ATOL}
  assert not bad, bad


@pytest.mark.parametrize('fixture', ('w_mask', 'two_path', 'image_only_gray'))
def test_losses_of_reference_outputs_match(fixture):
  """The objective alone, fed the reference's own outputs: isolates the loss code (grayscale:
  VGG sees the frame repeated to three channels)."""
  ref = parity.reference(fixture)
  vgg_params = convert.vgg_from_torch(parity.state_dict(fixture))
  terms = jax.jit(losses.objective)(ref['train'], ref['video'], vgg_params)
  for name in sorted(set(losses.WEIGHTS) | {'total'}):
    np.testing.assert_allclose(terms[name], ref[f'loss_{name}'], rtol=2e-6, err_msg=name)


def test_published_weights_and_total():
  """The published weights recombine the fixture's unweighted terms into its total."""
  ref = parity.reference('w_mask')
  total = sum(w * float(ref[f'loss_{n}']) for n, w in losses.WEIGHTS.items())
  np.testing.assert_allclose(total, float(ref['loss_total']), rtol=1e-6)


def test_converter_reads_the_split_and_channels_and_names_a_wrong_variant():
  sd = parity.state_dict('two_path_128_896')
  model, _ = convert.from_torch(sd, 'two_path', (128, 128))
  assert model.latent_split == (128, 896) and model.two_path
  gray = parity.state_dict('image_only_gray')
  model, _ = convert.from_torch(gray, 'image_only', (128, 128))
  assert (model.num_classes, model.channels) == (0, 1)
  with pytest.raises(KeyError, match="no 'motion_net_bg.fc1.bias'.*wrong variant"):
    convert.from_torch(gray, 'two_path', (128, 128))
  with pytest.raises(KeyError, match="no 'motion_net[.].*of this variant"):
    convert.from_torch(sd, 'image_only', (128, 128))
