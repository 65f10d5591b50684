"""The CPU demo with the objective's options exposed, for the ablations of docs/ABLATION.md.

Defaults are configs/synthetic.py:published's (the published objective); the runs of the table:

  python -m seg2vid_jax.main --config=configs/synthetic_ablation.py --workdir=W \
      --config.num_prior_samples=10 \
      --config.loss_weights.photometric=10 --config.kl_free_nats=64 --config.loss_weights.mask=1
"""

import ml_collections

from configs import synthetic


def get_config():
  """configs/synthetic.py:published with loss weights overridable from the command line
  (kl_free_nats and kl_warmup_steps come from configs/default.py)."""
  config = synthetic.get_config('published')
  # Overridable weights (the others keep losses.WEIGHTS); the extra terms are off as published.
  config.loss_weights = ml_collections.ConfigDict(dict(
      photometric=0.0, flow_supervised=0.0, flow_supervised_objects=0.0, mask=0.1, kld=0.1))
  return config
