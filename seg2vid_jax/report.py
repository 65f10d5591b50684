"""Prints the latest evaluation of a workdir as the Markdown results table of the README.

  python -m seg2vid_jax.report --workdir=workdirs/synthetic
"""

import glob
import json
import os
import re
import sys

ROWS = (('seg2vid_jax, posterior z (reconstruction)', 'posterior'),
        ('seg2vid_jax, best of N prior samples', 'prior_best_of_n'),
        ('copy the first frame (baseline)', 'copy_first_frame'),
        ('zero flow (baseline)', 'zero_flow'))


def latest_eval(workdir: str):
  """(step, results) of the newest <workdir>/eval/step_<N>.json."""
  paths = glob.glob(os.path.join(workdir, 'eval', 'step_*.json'))
  if not paths:
    raise FileNotFoundError(f'no evaluation in {workdir}/eval: train or run --mode=eval first')
  path = max(paths, key=lambda p: int(re.search(r'step_(\d+)', p).group(1)))
  with open(path) as f:
    return int(re.search(r'step_(\d+)', path).group(1)), json.load(f)


def markdown_table(results) -> str:
  """PSNR / SSIM (mean over predicted frames) and flow EPE per method, as Markdown."""
  cell = lambda key, fmt: fmt.format(results[key]) if key in results else '-'
  lines = ['| method | PSNR (dB) | SSIM | flow EPE (px) |', '| --- | --- | --- | --- |']
  for name, kind in ROWS:
    lines.append(f'| {name} | {cell(f"psnr/{kind}/mean", "{:.2f}")} | '
                 f'{cell(f"ssim/{kind}/mean", "{:.3f}")} | '
                 f'{cell(f"epe_px/{kind}/mean", "{:.2f}")} |')
  return '\n'.join(lines)


def main(argv):
  workdir = next((a.split('=', 1)[1] for a in argv if a.startswith('--workdir=')), None)
  if workdir is None:
    sys.exit('usage: python -m seg2vid_jax.report --workdir=DIR')
  step, results = latest_eval(workdir)
  print(f'Evaluation of {workdir} at step {step}:\n')
  print(markdown_table(results))


if __name__ == '__main__':
  main(sys.argv[1:])
