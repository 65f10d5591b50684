"""The CPU demo: a narrow seg2vid on the built-in synthetic street scenes, 64x64.

Trains and evaluates in 11-14 minutes on 2 CPU cores (AMD EPYC, 1.0-1.3 steps/s; `make demo`
runs it, then evaluates and generates):

  python -m seg2vid_jax.main --config=configs/synthetic.py --workdir=workdirs/synthetic

The demo's objective deviates from the published one (docs/ABLATION.md, run Y; each a config
field whose default is published): with the published objective the latent collapses in 800
steps (KL 0.25 nats per clip, prior samples identical). Run Y's recipe: the supervised flow
term (synthetic data only: exact flow) on all valid pixels (weight 1) and again on the moving
objects' pixels (weight 0.15), 32 free nats, mask weight 1.0, the posterior's logvar bias
initialised at -6, the KL weight ramped from 0 over the run, flow heads in pixels, seed 3 (the
best of seeds 0-3 of run W's recipe, rows T-W; the decoder reads z on 3 of the 4), batch 8
(run B8), and the learning rate x0.1 from step 600 (run B8D600: all 5 of issue 11's demo targets
at seeds 3 and 1, 4 at seed 0; B8D600e, after XLA:CPU's products moved to Eigen: all 5 at seeds
3, 1 and 0; at a constant rate batch 8 met 4 at seeds 3 and 0, batch 4 met 3 and 1).
`--config=configs/synthetic.py:published` is the same model and data with the published
objective and seed 0 (configs/test.py, configs/synthetic_ablation.py and stage 1 build on it).
"""

from configs import default

VARIANTS = ('demo', 'published')


def get_config(variant: str = 'demo'):
  """Synthetic data generated on the fly; a model small enough for a laptop CPU; `variant`
  'demo' (run Y's objective) or 'published' (the published objective)."""
  if variant not in VARIANTS:
    raise ValueError(f'configs/synthetic.py:{variant}: the variants are {VARIANTS}')
  config = default.get_config()
  config.dataset = 'synthetic'  # Generated on the fly by seg2vid_jax.data.synthetic.
  config.image_size = (64, 64)  # Small frames: the refinement U-Net gets 4 levels.
  config.batch_size = 4  # Clips per step (1.6 to 3 steps/s on 2 cores); the demo uses 8.
  config.two_path = True  # Cars/people and the background move differently: two paths.
  config.num_eval_clips = 64  # Held-out synthetic clips evaluated.

  config.model.encoder_widths = (16, 32, 64, 128)
  config.model.motion_widths = (16, 32, 32, 64, 64)
  config.model.latent_channels = 16  # 4x4x16 latent map = one row of 256.
  config.model.z_dim = 256
  config.model.code_channels = 8
  config.model.head_width = 8
  config.model.refine_widths = (16, 32, 64, 64)
  config.model.refine_depths = (1, 1, 1, 1)
  config.model.refine_bottleneck = 64

  config.learning_rate = 1e-3  # The published Adam learning rate.
  config.num_train_steps = 800  # 11-14 min on 2 cores at the demo's batch 8, evaluation included.
  config.log_every_steps = 50
  config.checkpoint_every_steps = 400
  config.sample_every_steps = 200
  config.eval_every_steps = 0  # Evaluate once, at the end.
  config.num_prior_samples = 10  # Best of 10 prior samples, as issue 11 measures.
  if variant == 'published':
    return config

  config.loss_weights = dict(  # The other weights keep losses.WEIGHTS.
      flow_supervised=1.0,  # EPE of the flow against the exact flow (px); not published.
      flow_supervised_objects=0.15,  # The same EPE on moving-object pixels only (run Y).
      mask=1.0)  # Published 0.1: keeps the masks open on moving objects.
  config.kl_free_nats = 32.0  # Nats per clip the KL term does not penalise (published 0).
  config.kl_warmup_steps = config.num_train_steps  # KL weight ramped from 0 (published: none).
  config.model.logvar_bias_init = -6.0  # Start with z ~ mu (sigma 0.05), not z ~ noise.
  config.model.flow_in_pixels = True  # Flow heads output pixels (published: normalised units).
  config.batch_size = 8  # Published 8 on Cityscapes; docs/ABLATION.md B8 (batch 4: run Y).
  config.seed = 3  # Rows T-W of docs/ABLATION.md: seeds 0-3 of this recipe; 3 reads z most.
  config.lr_schedule = 'piecewise'  # Published: constant. docs/ABLATION.md, run B8D600.
  config.lr_decay_boundaries = (600,)  # The rate x0.1 (lr_decay_factor) for the last 200 steps.
  return config
