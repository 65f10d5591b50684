"""colab/seg2vid_jax_demo.ipynb runs top to bottom, headless on CPU, in its smoke mode."""

import os

import pytest

nbformat = pytest.importorskip('nbformat')
nbclient = pytest.importorskip('nbclient')
kernelspec = pytest.importorskip('ipykernel.kernelspec')

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, 'colab', 'seg2vid_jax_demo.ipynb')


def test_notebook_is_valid_and_explains_every_step():
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(nb)
  kinds = [cell.cell_type for cell in nb.cells]
  # Every code cell comes after a markdown cell that says what it does.
  for i, kind in enumerate(kinds):
    if kind == 'code':
      assert i > 0 and kinds[i - 1] == 'markdown', f'code cell {i} has no explanation'
  assert all(not cell.get('outputs') for cell in nb.cells if cell.cell_type == 'code'), (
      'commit the notebook without outputs')
  source = '\n'.join(cell.source for cell in nb.cells)
  assert 'REPO_URL' in source and 'SEG2VID_SMOKE' in source


def test_notebook_runs_in_smoke_mode(tmp_path, monkeypatch):
  # A python3 kernelspec of this interpreter (the venv's), found first on JUPYTER_PATH.
  kernelspec.write_kernel_spec(str(tmp_path / 'kernels' / 'python3'))
  monkeypatch.setenv('JUPYTER_PATH', str(tmp_path))
  env = dict(os.environ, SEG2VID_SMOKE='1', SEG2VID_WORKDIR=str(tmp_path / 'workdir'),
             CUDA_VISIBLE_DEVICES='', JAX_PLATFORMS='cpu')
  nb = nbformat.read(NOTEBOOK, as_version=4)
  client = nbclient.NotebookClient(nb, kernel_name='python3', timeout=600,
                                   resources={'metadata': {'path': REPO}})
  client.execute(env=env)  # Raises CellExecutionError, with the traceback, if a cell fails.

  outputs = [out for cell in nb.cells if cell.cell_type == 'code' for out in cell.outputs]
  assert not [out for out in outputs if out.output_type == 'error']
  displays = [out for out in outputs if out.output_type in ('display_data', 'execute_result')]
  html = [out.data['text/html'] for out in displays if 'text/html' in out.data]
  assert any('data:image/gif;base64,' in h for h in html), 'no GIF shown'
  assert any('<img' in h and 'image/png' in h for h in html), 'no flow / mask images shown'
  text = ''.join(out.get('text', '') for out in outputs if out.output_type == 'stream')
  assert 'restored the checkpoint of step 2' in text
  generated = os.path.join(tmp_path, 'workdir', 'generated_unseen')
  assert {'samples.gif', 'sample_0.gif', 'sample_0_flow_1.png', 'sample_0_mask_1.png'} <= set(
      os.listdir(generated))
