"""Prints the latest evaluation of a workdir as the Markdown results tables of the README.

  python -m seg2vid_jax.report --workdir=workdirs/synthetic
"""

import glob
import json
import os
import re
import sys

ROWS = (('seg2vid_jax, posterior (z = mu of the true clip)', 'posterior'),
        ('the same, warped first frame before the refinement', 'posterior_warped'),
        ('seg2vid_jax, one prior sample (z ~ N(0, I))', 'prior_sample'),
        ('seg2vid_jax, best of N prior samples', 'prior_best_of_n'),
        ('copy the first frame (baseline)', 'copy_first_frame'),
        ('zero flow (baseline)', 'zero_flow'),
        ('first frame warped by the exact flow (oracle, synthetic data)', 'exact_flow_warp'))


def latest_eval(workdir: str):
  """(step, results) of the newest <workdir>/eval/step_<N>.json."""
  paths = glob.glob(os.path.join(workdir, 'eval', 'step_*.json'))
  if not paths:
    raise FileNotFoundError(f'no evaluation in {workdir}/eval: train or run --mode=eval first')
  path = max(paths, key=lambda p: int(re.search(r'step_(\d+)', p).group(1)))
  with open(path) as f:
    return int(re.search(r'step_(\d+)', path).group(1)), json.load(f)


def _cell(results, key, fmt):
  return fmt.format(results[key]) if key in results else '-'


def markdown_table(results) -> str:
  """PSNR / SSIM (mean over predicted frames) and flow EPE per method, as Markdown."""
  lines = ['| method | PSNR (dB) | SSIM | flow EPE, valid pixels (px) | '
           'flow EPE, moving objects (px) |', '| --- | --- | --- | --- | --- |']
  for name, kind in ROWS:
    cells = [_cell(results, f'psnr/{kind}/mean', '{:.2f}'),
             _cell(results, f'ssim/{kind}/mean', '{:.3f}'),
             _cell(results, f'epe_px/{kind}/mean', '{:.2f}'),
             _cell(results, f'epe_obj_px/{kind}/mean', '{:.2f}')]
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def summary_lines(results):
  """The latent's use and the posterior's and prior's margins over the baselines."""
  get = lambda key: results.get(f'{key}/mean', float('nan'))
  copy = get('psnr/copy_first_frame')
  return [
      f'- KL of the posterior: {get("kl_nats/posterior"):.2f} nats per clip; mean forward '
      f'mask {get("mask_fw/posterior"):.3f} ({get("mask_fw/moving_objects"):.3f} on '
      'moving objects)',
      f'- spread between prior samples: {get("spread/prior_pixels"):.4f} (mean absolute '
      f'pixel difference), {get("spread/prior_flow_px"):.2f} px (flow)',
      f'- posterior - copy: {get("psnr/posterior") - copy:+.2f} dB; one prior sample - copy: '
      f'{get("psnr/prior_sample") - copy:+.2f} dB; best of N - copy: '
      f'{get("psnr/prior_best_of_n") - copy:+.2f} dB; exact-flow warp - copy: '
      f'{get("psnr/exact_flow_warp") - copy:+.2f} dB',
      f'- posterior EPE / zero flow: {get("epe_px/posterior") / get("epe_px/zero_flow"):.2f} '
      f'(valid pixels), {get("epe_obj_px/posterior") / get("epe_obj_px/zero_flow"):.2f} '
      '(moving objects)',
      f'- fine detail kept (Laplacian energy / the true frame\'s): '
      f'{get("detail/posterior_warped"):.2f} warped, {get("detail/posterior"):.2f} refined '
      f'(posterior); {get("detail/prior_sample"):.2f} (one prior sample); '
      f'{get("detail/exact_flow_warp"):.2f} (exact-flow warp)',
  ]


def per_frame_table(results, metric='psnr', kinds=('posterior', 'prior_best_of_n',
                                                    'copy_first_frame')) -> str:
  """One row per method, one column per predicted frame: quality against time."""
  frames = sorted({int(m.group(1)) for k in results
                   for m in [re.match(rf'{metric}/posterior/frame_(\d+)$', k)] if m})
  lines = [f'| {metric} per frame | ' + ' | '.join(f'frame {k}' for k in frames) + ' |',
           '| --- |' + ' --- |' * len(frames)]
  for kind in kinds:
    lines.append(f'| {kind} | ' + ' | '.join(
        _cell(results, f'{metric}/{kind}/frame_{k}', '{:.2f}') for k in frames) + ' |')
  return '\n'.join(lines)


COMPACT_HEADER = ('| run | steps | PSNR posterior / prior / best of N / copy (dB) | '
                  'EPE valid: posterior / zero (px) | EPE objects: posterior / zero (px) | '
                  'KL (nats/clip) | prior spread (pixels) | mask fw |\n'
                  '| --- | --- | --- | --- | --- | --- | --- | --- |')


def compact_row(name, step, results) -> str:
  """One line of an ablation table: the numbers of the issue's targets for one run."""
  get = lambda key: results.get(f'{key}/mean', float('nan'))
  psnr = ' / '.join(f'{get("psnr/" + k):.2f}' for k in
                    ('posterior', 'prior_sample', 'prior_best_of_n', 'copy_first_frame'))
  epe = lambda m: f'{get(m + "/posterior"):.2f} / {get(m + "/zero_flow"):.2f}'
  return (f'| {name} | {step} | {psnr} | {epe("epe_px")} | {epe("epe_obj_px")} | '
          f'{get("kl_nats/posterior"):.2f} | {get("spread/prior_pixels"):.4f} | '
          f'{get("mask_fw/posterior"):.3f} |')


def main(argv):
  workdirs = [a.split('=', 1)[1] for a in argv if a.startswith('--workdir=')]
  if not workdirs:
    sys.exit('usage: python -m seg2vid_jax.report --workdir=DIR [--workdir=DIR2 ...]\n'
             '(several workdirs: one compact row each, as in docs/ABLATION.md)')
  if len(workdirs) > 1:
    print(COMPACT_HEADER)
    for workdir in workdirs:
      print(compact_row(os.path.basename(workdir.rstrip('/')), *latest_eval(workdir)))
    return
  workdir = workdirs[0]
  step, results = latest_eval(workdir)
  print(f'Evaluation of {workdir} at step {step}:\n')
  print(markdown_table(results))
  print()
  print('\n'.join(summary_lines(results)))
  print()
  print(per_frame_table(results))
  print()
  print(per_frame_table(results, 'epe_obj_px', ('posterior', 'prior_best_of_n', 'zero_flow')))


if __name__ == '__main__':
  main(sys.argv[1:])
