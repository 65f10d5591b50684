"""Parity in float64: the port run with `jax_enable_x64` against the original run in float64,
all five variants, both passes and every loss term (tests/test_parity.py has the measured
numbers and the fp32 checks). One subprocess, so that the rest of the suite keeps JAX's
default dtypes; its own file, so that the suite's other worker runs the fp32 parity tests
meanwhile."""

import functools
import json
import os
import subprocess
import sys

import pytest

from seg2vid_jax.losses import img2vid as losses
from tests import conftest
from tests.test_parity import ATOL64, FIXTURES, LOSS_RTOL64, OUTPUTS, REPO


@functools.lru_cache(maxsize=None)
def float64_differences():
  """`max_differences` of every fixture in float64, computed in one subprocess with x64 on."""
  script = ('import jax, json; jax.config.update("jax_enable_x64", True)\n'
            'from tests import test_parity as t\n'
            'print("RESULT" + json.dumps({f: t.max_differences(f, True) for f in t.FIXTURES}))')
  # XLA:CPU's backend at -O1, not the suite's -O0: the run is arithmetic-heavy (w_mask, measured
  # 2026-12-03: compile + run 17.3 + 56.1 s at -O0, 25.5 + 13.7 s at the default -O3, 17.6 +
  # 12.7 s at -O1).
  flags = conftest.subprocess_xla_flags('--xla_backend_optimization_level=1', optimised=True)
  result = subprocess.run([sys.executable, '-c', script], cwd=REPO, capture_output=True,
                          text=True, timeout=1200, env=dict(os.environ, XLA_FLAGS=flags))
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
