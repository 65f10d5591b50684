"""Test set-up shared by every test: CPU only, TensorFlow kept off any GPU, and a persistent
XLA compilation cache so that the many runs of the same tiny model compile once."""

import os
import pathlib

os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      str(pathlib.Path.home() / '.cache' / 'seg2vid_jax' / 'jax'))

# The suite compiles far more than it runs (tiny models, a few steps): XLA:CPU's backend at
# -O0 compiles the test model's train step in 28 s instead of 47 s. The float64 parity run,
# which runs the published model for minutes, uses -O1 instead (tests/test_parity_float64.py).
FAST_COMPILE_FLAG = '--xla_backend_optimization_level=0'
os.environ['XLA_FLAGS'] = ' '.join(
    f for f in (os.environ.get('XLA_FLAGS', ''), FAST_COMPILE_FLAG) if f)


def subprocess_xla_flags(*extra, optimised=False):
  """XLA_FLAGS for a subprocess: the suite's plus `extra`; `optimised` drops the -O0 flag."""
  flags = [f for f in os.environ.get('XLA_FLAGS', '').split()
           if not (optimised and f == FAST_COMPILE_FLAG)]
  return ' '.join(flags + list(extra))
