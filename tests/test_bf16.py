"""bfloat16 compute (config.model.dtype = 'bfloat16'): close to float32, parameters float32.

The small configuration of configs/synthetic.py (64x64, two paths, K = 4), one set of
float32 parameters (random init), two rendered synthetic clips; the same forward pass with
float32 and with bfloat16 compute.
"""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import synthetic as synthetic_config
from seg2vid_jax.tasks import img2vid
from seg2vid_jax.data import synthetic
from seg2vid_jax.models import example_inputs, init_variables
from seg2vid_jax.ops import conv, warp

# Eval mode (running statistics, what generation and evaluation run): max |bf16 - fp32| over
# the outputs, measured with jax 0.10.2 on CPU (largest |fp32| value in brackets), and the
# tolerance asserted, ~3x above. `warped` is the first frame sampled at the flow, so it
# carries the flow's error times the image gradient (0.0019 in normalised units is 0.06 px).
#   refined 1.5e-3 [0.69]  warped 1.35e-2 [0.98]  flow 1.9e-3 [0.23]  flow_back 1.3e-3 [0.16]
#   mask_fw 3.1e-4 [0.53]  mask_bw 3.7e-4 [0.52]  mu 9.1e-4 [0.12]     logvar 6.6e-4 [0.13]
EVAL_TOLERANCE = {'refined': 4e-3, 'warped': 3.5e-2, 'flow': 5e-3, 'flow_back': 4e-3,
                  'mask_fw': 1e-3, 'mask_bw': 1e-3, 'mu': 3e-3, 'logvar': 2e-3}

# Train mode (batch statistics): with random weights, BatchNorm scales every activation to
# unit variance and the flows reach 3.2 (100 px on a 64x64 frame), so bf16 rounding moves them
# by up to 2% of that. Measured (largest |fp32| in brackets), and the tolerance, ~2.5x above:
#   flow 6.0e-2 [3.2]  flow_back 7.0e-2 [4.0]  mask_fw 1.2e-2 [0.80]  mask_bw 9.8e-3 [0.87]
#   mu 2.2e-2 [2.2]    logvar 1.9e-2 [2.2]
# (`warped` and `refined` then sample 100 px away: 0.59 and 0.09 apart, not compared.)
TRAIN_TOLERANCE = {'flow': 0.15, 'flow_back': 0.18, 'mask_fw': 0.03, 'mask_bw': 0.025,
                   'mu': 0.055, 'logvar': 0.05}


def _models():
  fp32 = synthetic_config.get_config('published')
  bf16 = synthetic_config.get_config('published')
  bf16.model.dtype = 'bfloat16'
  return img2vid.create_model(fp32), img2vid.create_model(bf16)


@pytest.fixture(scope='module')
def setup():
  model32, model16 = _models()
  variables = init_variables(model32, jax.random.key(0), batch=2)
  k = model32.num_predicted_frames
  h, w = model32.image_size
  clips = [synthetic.make_clip((7, i), h, w, k + 1) for i in range(2)]
  video = jnp.asarray(np.stack([c['video'] for c in clips]), jnp.float32) / 255.0
  labels = jax.nn.one_hot(np.stack([c['labels'][0] for c in clips]), model32.num_classes)
  rng = np.random.default_rng(0)
  noise = jnp.asarray(rng.standard_normal((2, h, w, model32.channels)), jnp.float32)
  z = jnp.asarray(rng.standard_normal((2,) + model32.latent_shape), jnp.float32)
  return model32, model16, variables, (video, labels, noise, z)


def _conv_dtypes(model, variables, inputs):
  """Input dtypes of the convolutions in the forward pass, inside custom_vjp calls too (traced
  without Winograd, which turns the wide 3x3 layers on the CPU into matrix products)."""
  def walk(jaxpr):
    for e in jaxpr.eqns:
      if e.primitive.name == 'conv_general_dilated':
        yield str(e.invars[0].aval.dtype)
      for param in e.params.values():
        if hasattr(param, 'eqns') or hasattr(param, 'jaxpr'):
          yield from walk(getattr(param, 'jaxpr', param))
  with conv.using_mode('direct'):
    closed = jax.make_jaxpr(lambda v, *a: model.apply(v, *a))(variables, *inputs)
  return collections.Counter(walk(closed.jaxpr))


def test_parameters_stay_float32():
  model32, model16 = _models()
  shapes32 = jax.eval_shape(model32.init, jax.random.key(0), *example_inputs(model32, 2))
  shapes16 = jax.eval_shape(model16.init, jax.random.key(0), *example_inputs(model16, 2))
  assert jax.tree.structure(shapes16) == jax.tree.structure(shapes32)
  for a, b in zip(jax.tree.leaves(shapes32), jax.tree.leaves(shapes16)):
    assert a.shape == b.shape and b.dtype == jnp.float32, (a, b)


def test_bf16_really_computes_in_bf16(setup):
  model32, model16, variables, inputs = setup
  assert _conv_dtypes(model16, variables, inputs) == {'bfloat16': 46}
  assert _conv_dtypes(model32, variables, inputs) == {'float32': 46}


def test_eval_forward_in_bf16_is_close_to_fp32(setup):
  model32, model16, variables, inputs = setup
  out32 = jax.jit(lambda v, *a: model32.apply(v, *a))(variables, *inputs)
  out16 = jax.jit(lambda v, *a: model16.apply(v, *a))(variables, *inputs)
  errors = {}
  for name, tolerance in EVAL_TOLERANCE.items():
    assert out16[name].dtype == jnp.float32, (name, out16[name].dtype)  # Outputs in fp32.
    errors[name] = float(jnp.abs(out16[name] - out32[name]).max())
    assert 0 < errors[name] < tolerance, (name, errors[name], tolerance)
  print('eval max |bf16 - fp32|:', {k: f'{v:.2e}' for k, v in errors.items()})


def test_train_forward_in_bf16_is_close_to_fp32(setup):
  model32, model16, variables, inputs = setup

  def run(model):
    return jax.jit(lambda v, *a: model.apply(v, *a, train=True, mutable=['batch_stats']))(
        variables, *inputs)

  (out32, stats32), (out16, stats16) = run(model32), run(model16)
  errors = {}
  for name, tolerance in TRAIN_TOLERANCE.items():
    errors[name] = float(jnp.abs(out16[name] - out32[name]).max())
    assert errors[name] < tolerance, (name, errors[name], tolerance)
  print('train max |bf16 - fp32|:', {k: f'{v:.2e}' for k, v in errors.items()})
  # The updated running statistics stay float32 too.
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(stats16))
  assert jax.tree.structure(stats16) == jax.tree.structure(stats32)


def test_warp_of_a_bf16_image_by_a_fp32_flow():
  rng = np.random.default_rng(0)
  image = jnp.asarray(rng.uniform(0, 1, (2, 3, 16, 24, 3)), jnp.float32)
  flow = jnp.asarray(rng.standard_normal((2, 3, 16, 24, 2)) * 0.2, jnp.float32)
  out = warp(image.astype(jnp.bfloat16), flow)
  assert out.dtype == jnp.bfloat16
  # Four bf16 products and sums of values in [0, 1]: a few bf16 ulps (2^-8).
  assert float(jnp.abs(out.astype(jnp.float32) - warp(image, flow)).max()) < 2e-2
  loss = lambda x, f: jnp.sum(warp(x, f).astype(jnp.float32) ** 2)
  grad_image, grad_flow = jax.jit(jax.grad(loss, argnums=(0, 1)))(image.astype(jnp.bfloat16),
                                                                  flow)
  assert grad_image.dtype == jnp.bfloat16 and grad_flow.dtype == jnp.float32
  assert bool(jnp.isfinite(grad_flow).all()) and float(jnp.abs(grad_flow).max()) > 0
