"""Step time of the published model against batch, resolution and predicted frames, and a plot.

Each point is `benchmarks/train_step.py` in its own process (so that each peak resident memory
is its own), varying one factor from the published configuration (batch 2, 128x256, K = 4):
batch 1, 2, 4, 8; resolution 128x128, 128x256, 256x512; K = 4, 8. "x linear" is the step time
divided by the reference point's time scaled by the factor (batch, pixels or K relative to the
published configuration): 1.0 is perfectly linear, below 1 better than linear. Prints a
Markdown table and writes a PNG plot (--from_table re-plots a table printed earlier).

  PYTHONPATH=. python benchmarks/scaling.py [--steps=2] [--plot=docs/scaling.png]
  PYTHONPATH=. python benchmarks/scaling.py --from_table=docs/scaling.md
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import matplotlib.ticker  # pylint: disable=g-import-not-at-top

REFERENCE = dict(batch=2, height=128, width=256, frames=5)
SWEEPS = {
    'batch': [dict(batch=b) for b in (1, 2, 4, 8)],
    'resolution': [dict(height=h, width=w) for h, w in ((128, 128), (128, 256), (256, 512))],
    'predicted frames K': [dict(frames=k + 1) for k in (4, 8)],
}


def factor(point):
  """How much more work than the reference point a linear cost model predicts."""
  return (point['batch'] / REFERENCE['batch']
          * point['height'] * point['width'] / (REFERENCE['height'] * REFERENCE['width'])
          * (point['frames'] - 1) / (REFERENCE['frames'] - 1))


def measure(point, steps, cache):
  """Runs train_step.py for one configuration (once: shared points are reused)."""
  key = tuple(sorted(point.items()))
  if key not in cache:
    with tempfile.NamedTemporaryFile(suffix='.json') as out:
      flags = [f'--{k}={v}' for k, v in point.items()]
      subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), 'train_step.py'),
                      f'--steps={steps}', f'--json={out.name}'] + flags, check=True)
      with open(out.name) as f:
        cache[key] = json.load(f)
  return cache[key]


def label(sweep, point):
  """The tick label of a point on its sweep's axis."""
  if sweep == 'batch':
    return str(point['batch'])
  if sweep == 'resolution':
    return f"{point['height']}x{point['width']}"
  return str(point['frames'] - 1)


def plot(rows, reference, path):
  """One log-log panel per sweep: measured step time and the linear prediction."""
  fig, axes = plt.subplots(1, len(SWEEPS), figsize=(4 * len(SWEEPS), 3.4))
  for ax, sweep in zip(axes, SWEEPS):
    points = [(factor(p), step_s, label(sweep, p)) for s, p, step_s in rows if s == sweep]
    xs = [f for f, _, _ in points]
    ax.plot(xs, [t for _, t, _ in points], 'o-', label='measured')
    ax.plot(xs, [reference * f for f in xs], '--', color='gray',
            label='linear from batch 2, 128x256, K=4')
    ax.set_xscale('log', base=2)
    ax.set_yscale('log', base=2)
    ax.set_xticks(xs, [name for _, _, name in points])
    ax.minorticks_off()
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel(sweep)
    ax.set_ylabel('train step (s)')
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  fig.suptitle('seg2vid_jax train step, published two-path model, fp32, 2-core CPU', fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  print(f'plot written to {path}')


def read_table(path):
  """(sweep, point, step s) rows of a table this script printed earlier (to re-plot it)."""
  rows = []
  for line in open(path):
    cells = [c.strip() for c in line.strip().strip('|').split('|')]
    if len(cells) < 5 or not cells[1].isdigit():
      continue
    height, width = (int(v) for v in cells[2].split('x'))
    point = dict(batch=int(cells[1]), height=height, width=width, frames=int(cells[3]) + 1)
    rows.append((cells[0], point, float(cells[4])))
  return rows


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--steps', type=int, default=2)
  parser.add_argument('--plot', default='docs/scaling.png')
  parser.add_argument('--from_table', help='re-plot the Markdown table of an earlier run')
  args = parser.parse_args()
  if args.from_table:
    rows = read_table(args.from_table)
    reference = next(t for _, p, t in rows if p == REFERENCE)
    plot(rows, reference, args.plot)
    return
  cache, rows = {}, []
  for sweep, points in SWEEPS.items():
    for change in points:
      point = dict(REFERENCE, **change)
      rows.append((sweep, point, measure(point, args.steps, cache)))
  reference = cache[tuple(sorted(REFERENCE.items()))]['step_s']

  print('| sweep | batch | size | K | step (s) | x linear | GFLOP | GFLOP/s | % of peak '
        '| XLA temp (GB) | peak RSS (GB) |')
  print('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |')
  for sweep, p, r in rows:
    linear = r['step_s'] / (reference * factor(p))
    print(f"| {sweep} | {p['batch']} | {p['height']}x{p['width']} | {p['frames'] - 1} "
          f"| {r['step_s']:.2f} | {linear:.2f} | {r['gflop']:.0f} | {r['gflops']:.0f} "
          f"| {r['gflops'] / r['peak_gflops']:.0%} | {r['temp_gb']:.2f} | {r['rss_gb']:.2f} |")
  plot([(sweep, p, r['step_s']) for sweep, p, r in rows], reference, args.plot)


if __name__ == '__main__':
  main()
