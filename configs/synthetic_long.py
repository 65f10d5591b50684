"""The longer CPU run of issue 11: run H's objective of docs/ABLATION.md for 4,000 steps
(49 minutes on 2 cores, evaluation included, measured 2026-12-02; the issue allows 90).

  python -m seg2vid_jax.main --config=configs/synthetic_long.py --workdir=workdirs/synthetic_long

Deviations from the published objective (each a config field whose default is published):
the supervised flow term (synthetic data only: exact flow), 32 free nats, mask weight 1.0,
the posterior's logvar bias initialised at -6 and the KL weight ramped from 0 over the run.
Measured (docs/ABLATION.md, run L): the decoder ignores z at the end (KL 45 nats per clip,
prior spread 0.0003); posterior 18.74 dB against 16.55 for copying the first frame, flow EPE
0.73x zero flow (0.77x on moving objects). Issue 11's long-run targets are not met.
"""

from configs import synthetic_ablation


def get_config():
  """configs/synthetic.py's model and data with run H's objective, 5x longer."""
  config = synthetic_ablation.get_config()
  config.loss_weights.flow_supervised = 1.0  # EPE of the flow against the exact flow (px).
  config.loss_weights.mask = 1.0  # Published 0.1: keeps the masks open on moving objects.
  config.kl_free_nats = 32.0  # Nats per clip the KL term does not penalise.
  config.model.logvar_bias_init = -6.0  # Start with z ~ mu (sigma 0.05), not z ~ noise.
  config.num_train_steps = 4_000  # ~50 minutes of steps on 2 cores.
  config.kl_warmup_steps = config.num_train_steps  # KL weight ramped from 0 over the run.
  config.checkpoint_every_steps = 1_000
  config.sample_every_steps = 1_000
  config.log_every_steps = 100
  return config
