"""Tests of seg2vid_jax.report: the README's tables from an evaluation JSON."""

import json

import pytest

from seg2vid_jax import report

RESULTS = {'psnr/posterior/mean': 19.16, 'psnr/prior_sample/mean': 18.17,
           'psnr/prior_best_of_n/mean': 18.74, 'psnr/copy_first_frame/mean': 16.55,
           'epe_px/posterior/mean': 0.99, 'epe_px/zero_flow/mean': 1.85,
           'epe_obj_px/posterior/mean': 4.89, 'epe_obj_px/zero_flow/mean': 8.0,
           'kl_nats/posterior/mean': 123.4, 'mask_fw/posterior/mean': 1.0,
           'mask_fw/moving_objects/mean': 0.999, 'spread/prior_pixels/mean': 0.0191,
           'spread/prior_flow_px/mean': 0.5, 'detail/posterior_warped/mean': 0.49,
           'detail/posterior/mean': 0.31, 'detail/prior_sample/mean': 0.3,
           'psnr/exact_flow_warp/mean': 20.64, 'psnr/posterior_warped/mean': 18.59,
           'detail/exact_flow_warp/mean': 0.57,
           'psnr/posterior/frame_1': 20.3, 'psnr/posterior/frame_2': 18.0}


def test_latest_eval_is_the_highest_step_not_the_newest_name(tmp_path):
  (tmp_path / 'eval').mkdir()
  for step in (2, 10):
    (tmp_path / 'eval' / f'step_{step}.json').write_text(json.dumps({'step': step}))
  assert report.latest_eval(str(tmp_path)) == (10, {'step': 10})
  with pytest.raises(FileNotFoundError, match='no evaluation'):
    report.latest_eval(str(tmp_path / 'missing'))


def test_tables_and_margins_from_fixed_results():
  table = report.markdown_table(RESULTS).splitlines()
  assert table[2] == ('| seg2vid_jax, posterior (z = mu of the true clip) | 19.16 | - | 0.99 '
                      '| 4.89 |')
  assert table[3] == '| the same, warped first frame before the refinement | 18.59 | - | - | - |'
  assert table[-2] == '| zero flow (baseline) | - | - | 1.85 | 8.00 |'
  assert table[-1].endswith('(oracle, synthetic data) | 20.64 | - | - | - |')
  lines = report.summary_lines(RESULTS)
  assert 'posterior - copy: +2.61 dB' in lines[2] and 'best of N - copy: +2.19 dB' in lines[2]
  assert 'exact-flow warp - copy: +4.09 dB' in lines[2]
  assert '0.54 (valid pixels), 0.61 (moving objects)' in lines[3]
  assert lines[4].endswith('0.49 warped, 0.31 refined (posterior); 0.30 (one prior sample); '
                           '0.57 (exact-flow warp)')
  frames = report.per_frame_table(RESULTS).splitlines()
  assert frames[0] == '| psnr per frame | frame 1 | frame 2 |'
  assert frames[2] == '| posterior | 20.30 | 18.00 |'
  row = report.compact_row('Y', 800, RESULTS)
  assert row.startswith('| Y | 800 | 19.16 / 18.17 / 18.74 / 16.55 | 0.99 / 1.85 | 4.89 / 8.00 |')
