"""Where a compiled XLA:CPU program spends its time: a jax.profiler trace, summed by kind of op.

`profile(compiled, *args)` runs `compiled` once under `jax.profiler.trace`, reads the Perfetto
JSON that the profiler writes, and attributes the self time of every executed HLO op (thunk) to
a category: convolution forward / input gradient / weight gradient, matrix products, gathers
and scatters (the warp), pooling, copies and transposes, other fused element-wise work. The
categories come from each op's opcode, fused computation and window in the compiled HLO.
Eigen's convolutions run asynchronously and leave no op on record while they work; the
execution time that no op covers is reported as theirs.
"""

import collections
import glob
import gzip
import json
import math
import re
import tempfile

import jax

_INSTRUCTION = re.compile(
    r'^\s*(?:ROOT )?%?([\w.\-]+) = (\([^=]*?\)|\S+?)(?:\{[^}]*\})? ([\w\-]+)\((.*)$')


def _hlo_ops(hlo_text):
  """{instruction name: (opcode, output shape, attributes text, fused opcodes)} of a module."""
  ops, computations, convolutions, current = {}, collections.defaultdict(set), {}, None
  for line in hlo_text.splitlines():
    header = re.match(r'^\s*(?:ENTRY )?%?([\w.\-]+) .*\{\s*$', line)
    if header and '=' not in line.split('{')[0]:
      current = header.group(1)
      continue
    match = _INSTRUCTION.match(line)
    if not match:
      continue
    name, shape, opcode, rest = match.groups()
    computations[current].add(opcode)
    if opcode == 'convolution':
      convolutions[current] = (shape, rest)
    called = re.search(r'calls=%?([\w.\-]+)', rest)
    ops[name] = (opcode, shape, rest, called.group(1) if called else None)
  out = {}
  for name, (opcode, shape, rest, called) in ops.items():
    if called in convolutions:  # A fusion around a convolution: classify by the convolution.
      opcode, (shape, rest) = 'convolution', convolutions[called]
    out[name] = (opcode, shape, rest, computations.get(called, set()))
  return out


def _conv_kind(shape, attributes):
  """Forward, input gradient or weight gradient, from a convolution's window and output.

  XLA writes the weight gradient as a convolution whose window is the (large) output gradient
  and whose output is the (small) kernel; forward and input-gradient windows are the kernel.
  """
  window = re.search(r'size=([\dx]+)', attributes)
  labels = re.search(r'dim_labels=\w+->(\w+)', attributes)
  dims = re.search(r'\[([\d,]*)\]', shape).group(1).split(',')
  if not (window and labels):
    return 'convolution, forward'
  window_size = math.prod(int(d) for d in window.group(1).split('x'))
  out_spatial = math.prod(int(d) for d, l in zip(dims, labels.group(1)) if l.isdigit())
  if window_size > out_spatial:
    return 'convolution, weight gradient (XLA)'
  if 'transpose(' in attributes or 'lhs_dilate' in attributes:
    return 'convolution, input gradient'
  return 'convolution, forward'


def category(opcode, shape, attributes, fused):
  """The kind of work an HLO op does, for the breakdown."""
  kinds = fused | {opcode}
  if opcode == 'convolution':
    return _conv_kind(shape, attributes)
  if 'dot' in kinds:
    return 'matrix products (per-tap weight gradients, dense layers)'
  if kinds & {'gather', 'scatter'}:
    return 'gather / scatter (warp)'
  if kinds & {'reduce-window', 'select-and-scatter'}:
    return 'pooling and its gradient'
  if kinds & {'while', 'call', 'conditional'}:
    return 'control flow (loop overhead)'
  moves = {'copy', 'bitcast', 'parameter', 'tuple', 'get-tuple-element', 'broadcast', 'reshape',
           'fusion'}
  if 'transpose' in kinds and kinds <= moves | {'transpose'}:
    return 'transposes (layout changes)'
  if kinds <= moves | {'slice', 'concatenate', 'pad', 'dynamic-slice', 'dynamic-update-slice'}:
    return 'copies, slices, pads, concatenations'
  return 'other fused element-wise and reductions'


def _self_times(events):
  """Self time (us) of each complete event: its duration minus that of the events nested in it."""
  by_thread = collections.defaultdict(list)
  for e in events:
    by_thread[(e['pid'], e['tid'])].append(e)
  out = []
  for evs in by_thread.values():
    evs.sort(key=lambda e: (e['ts'], -e['dur']))
    stack = []
    for e in evs:
      while stack and stack[-1][0]['ts'] + stack[-1][0]['dur'] <= e['ts']:
        out.append(stack.pop())
      if stack:
        stack[-1][1] -= e['dur']
      stack.append([e, e['dur']])
    out.extend(stack)
  return [(e, self_time) for e, self_time in out]


def profile(compiled, *args):
  """Runs `compiled(*args)` once under the profiler.

  Returns ({category: seconds}, {(op, category, shape): seconds}, seconds of execution).
  """
  ops = _hlo_ops(compiled.as_text())
  with tempfile.TemporaryDirectory() as log_dir:
    with jax.profiler.trace(log_dir, create_perfetto_trace=True):
      jax.block_until_ready(compiled(*args))
    path = glob.glob(f'{log_dir}/**/perfetto_trace.json.gz', recursive=True)[0]
    with gzip.open(path) as f:
      trace = json.load(f)
  events = [e for e in (trace['traceEvents'] if isinstance(trace, dict) else trace)
            if e.get('ph') == 'X' and 'hlo_op' in (e.get('args') or {})]
  totals, per_op = collections.Counter(), collections.Counter()
  for e, self_us in _self_times(events):
    name = e['args']['hlo_op']
    op = ops.get(name)
    kind = category(*op) if op else 'unattributed'
    totals[kind] += self_us / 1e6
    per_op[(name, kind, op[1] if op else '')] += self_us / 1e6
  start = min(e['ts'] for e in events)
  wall = (max(e['ts'] + e['dur'] for e in events) - start) / 1e6
  # Eigen's convolutions run asynchronously: their thunk only launches the work, so the time
  # during which no op is on record is theirs (and the executor's own overhead).
  busy, end = 0.0, start
  for e in sorted(events, key=lambda e: e['ts']):
    busy += max(0.0, e['ts'] + e['dur'] - max(e['ts'], end))
    end = max(end, e['ts'] + e['dur'])
  idle = wall - busy / 1e6
  if idle > 0.01 * wall:
    totals['no op on record (asynchronous Eigen convolutions)'] += idle
  return totals, per_op, wall


def print_breakdown(totals, per_op, wall, top=15):
  """Prints the categories, largest first, with their share of the summed time, and the `top`
  most expensive single ops. Ops overlap in time (XLA:CPU runs independent ops concurrently),
  so the sum can exceed the execution time."""
  total = sum(totals.values())
  print(f'profile: {total:.2f} s attributed over {wall:.2f} s of execution')
  for name, seconds in totals.most_common():
    print(f'  {name:58s} {seconds:7.2f} s  {seconds / total:6.1%}')
  print(f'the {top} most expensive ops:')
  for (name, kind, shape), seconds in per_op.most_common(top):
    print(f'  {seconds:6.2f} s  {name[:40]:40s} {kind[:34]:34s} {shape[:40]}')
