"""Published two-path seg2vid on Cityscapes sequences, 128x256, clips of 5, batch 8.

Prepare the data (README, "Data"), convert VGG19 weights once, then:

  python -m seg2vid_jax.main --config=configs/cityscapes.py --workdir=$WORKDIR \
      --config.manual_dir=/data/cityscapes --config.vgg_weights=vgg19_features.npz

On accelerators, the settings we expect to be fastest (not measured: this project has only
CPUs; tests/test_bf16.py checks that bfloat16 compute stays close to float32):

  TPU (v4/v5e, one host of 4-8 chips):
      --config.model.dtype=bfloat16 --config.batch_size=<8 x number of chips>
    bfloat16 compute with float32 parameters, BatchNorm statistics and losses (the model casts
    at each layer); 8 clips per chip keeps the 128x256 convolutions' batch dimension a
    multiple of 8. XLA's own TPU convolutions are used (the per-tap weight gradients and the
    Eigen switch of seg2vid_jax/ops/conv.py apply to the CPU only).
  GPU (A100/H100):
      --config.model.dtype=bfloat16 --config.batch_size=<8 x number of GPUs>
    the same; if memory runs out at batch 8 per GPU, add --config.model.remat_refine=True
    before lowering the batch (the refinement U-Net holds most activations).
  On CPUs keep float32: bfloat16 is slower there (../shared/spec/CPU_PERF.md).
The published batch of 8 is the global batch; a larger one changes the optimisation (the
published learning rate was tuned for 8), so scale `learning_rate` with care and say so.
"""

from configs import default


def get_config():
  """The published configuration: `configs/default.py` as it is (float32, batch 8)."""
  return default.get_config()
