"""XLA:CPU's library choices by name, for the benchmarks' --options: which library runs the
convolutions, matrix products and reductions of a jitted step (docs/PERF.md)."""

from seg2vid_jax.ops import conv

NAMES = ('ours', 'ynn_products', 'defaults')


def by_name(name):
  """Compiler options for `name`, under the current `ops.conv` mode: `ours` is
  `conv.compiler_options()` (Eigen's convolutions and products, YNNPACK's reductions);
  `ynn_products` is the choice before 2026-12-04 (YNNPACK's products and reductions);
  `defaults` is XLA's (YNNPACK for all three)."""
  if name == 'ours':
    return conv.compiler_options()
  if name == 'ynn_products':
    return {'xla_cpu_experimental_ynn_fusion_type':
            'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE'}
  if name == 'defaults':
    return None
  raise ValueError(f'--options: {name!r} is not one of {", ".join(NAMES)}')


def variants(modes, options):
  """The (label, conv mode, option name) of each combination to time; labels are the mode
  alone when one option is compared, else 'mode/option'."""
  return [(f'{m}/{o}' if len(options) > 1 else m, m, o) for m in modes for o in options]
