"""Number-for-number parity with the published seg2vid (../shared/parity), all five variants.

The published weights are regenerated, converted with `seg2vid_jax.convert.from_torch`, and
the eval pass (BatchNorm on running statistics), the train pass (batch statistics) and every
loss term are compared with the PyTorch model's own outputs.

The standard is the float64 references: the port run in float64 (`jax_enable_x64`) against
the original run in float64 (tests/test_parity_float64.py). Measured on a 2-core x86 CPU,
worst over the five variants: train pass 2e-11 (refined, image-only grayscale), eval pass
4.2e-14, loss terms 4.2e-9 relative (the VGG term; the others 4e-14); asserted at 1e-6 as the
issue asks. The fp32 port is checked against the fp32 references on the eval pass within
2e-4 (measured <= 2.9e-5: warped, image-only). The fp32 train pass is not compared: the fp32
reference is itself 9.0e-4 (refined) from the float64 truth, because batch statistics over
2 samples amplify float reordering.
"""

import os

import jax
import numpy as np
import pytest

from seg2vid_jax import convert
from seg2vid_jax.losses import img2vid as losses
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
  if not float64:
    eval_out = jax.jit(lambda v, *a: model.apply(v, *a, train=False))(variables, *args)
    return jax.device_get(eval_out), None, None

  def both_passes(v, vgg_params, *a):  # One program: XLA compiles the model once, not thrice.
    train_out, _ = model.apply(v, *a, train=True, mutable=['batch_stats'])
    return (model.apply(v, *a, train=False), train_out,
            losses.objective(train_out, a[0], vgg_params))
  return jax.device_get(jax.jit(both_passes)(variables, convert.vgg_from_torch(sd), *args))


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


def test_released_checkpoint_imports_into_a_workdir_that_restores_it(tmp_path):
  """seg2vid_jax.released: the 128/896 checkpoint into configs/cityscapes_released.py's model
  (at 128x128), restored by train.restore_state as it was converted; the 512/512 config and a
  second import are refused, naming what is wrong."""
  from configs import cityscapes, cityscapes_released  # pylint: disable=g-import-not-at-top
  from seg2vid_jax import released, train  # pylint: disable=g-import-not-at-top
  sd = parity.state_dict('two_path_128_896')
  config = cityscapes_released.get_config()
  config.image_size = (128, 128)
  wrong = cityscapes.get_config()
  wrong.image_size = (128, 128)
  with pytest.raises(ValueError, match=r'latent_split is \(128, 896\) in the checkpoint and '
                                       r'\(512, 512\) in the config'):
    released.import_checkpoint(sd, 'two_path', wrong, str(tmp_path / 'wrong'))
  released.import_checkpoint(sd, 'two_path', config, str(tmp_path / 'w'))
  with pytest.raises(FileExistsError, match='already has checkpoints'):
    released.import_checkpoint(sd, 'two_path', config, str(tmp_path / 'w'))
  _, variables = convert.from_torch(sd, 'two_path', (128, 128))
  _, _, state = train.restore_state(config, str(tmp_path / 'w'))
  assert int(state.step) == 0
  fc1 = state.params['motion_net_fg']['fc1']['kernel']
  np.testing.assert_array_equal(fc1, variables['params']['motion_net_fg']['fc1']['kernel'])
  assert fc1.shape == (1024, 896)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.batch_stats),
               jax.device_get(variables['batch_stats']))
