#!/usr/bin/env bash
# N seg2vid_jax processes on this machine, joined by jax.distributed over localhost (gloo CPU
# collectives): the code path of a TPU pod or a SLURM job, on one CPU. See --help.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: launch/local_multiprocess.sh [options] [-- extra seg2vid_jax.main flags]

Starts N processes of
  python -m seg2vid_jax.main --config=CONFIG --workdir=WORKDIR \
      --coordinator_address=localhost:PORT --num_processes=N --process_id=i [extra flags]
on this machine (CPU, JAX_PLATFORMS=cpu unless set), waits for all of them, prefixes every
line of process i with "[process i] ", and exits with the first non-zero exit code (the
other processes are then stopped: SIGTERM, SIGKILL after the grace period).

Options:
  -n, --num-processes N        processes (default 2)
  -c, --config PATH            config file (default configs/synthetic.py)
  -w, --workdir DIR            workdir shared by all processes (default workdirs/local_multiprocess)
  -p, --port PORT              coordinator port on localhost (default: a free port)
  -d, --devices-per-process K  simulated CPU devices per process
                               (XLA_FLAGS=--xla_force_host_platform_device_count=K)
      --python PY              Python interpreter (default: $PYTHON, else python3)
      --grace SECONDS          wait after SIGTERM before SIGKILL (default 30)
      --dry-run                print the commands, run nothing
  -h, --help                   this help

Relative paths are taken from the current directory; the processes run in the repository
root (so that `configs` is importable). Example, 2 processes x 2 steps of the test config:
  launch/local_multiprocess.sh -n 2 -c configs/test.py -w /tmp/s2v -- \
      --config.num_train_steps=2 --config.eval_every_steps=0 --config.sample_every_steps=0
EOF
}

die() { echo "local_multiprocess.sh: $*" >&2; exit 2; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NUM=2
CONFIG=configs/synthetic.py
WORKDIR=workdirs/local_multiprocess
PORT=
DEVICES=
PY="${PYTHON:-python3}"
GRACE=30
DRY_RUN=0
EXTRA=()

while (($#)); do
  case "$1" in
    -n|--num-processes) NUM="${2:?$1 needs a value}"; shift 2 ;;
    --num-processes=*) NUM="${1#*=}"; shift ;;
    -c|--config) CONFIG="${2:?$1 needs a value}"; shift 2 ;;
    --config=*) CONFIG="${1#*=}"; shift ;;
    -w|--workdir) WORKDIR="${2:?$1 needs a value}"; shift 2 ;;
    --workdir=*) WORKDIR="${1#*=}"; shift ;;
    -p|--port) PORT="${2:?$1 needs a value}"; shift 2 ;;
    --port=*) PORT="${1#*=}"; shift ;;
    -d|--devices-per-process) DEVICES="${2:?$1 needs a value}"; shift 2 ;;
    --devices-per-process=*) DEVICES="${1#*=}"; shift ;;
    --python) PY="${2:?$1 needs a value}"; shift 2 ;;
    --python=*) PY="${1#*=}"; shift ;;
    --grace) GRACE="${2:?$1 needs a value}"; shift 2 ;;
    --grace=*) GRACE="${1#*=}"; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

[[ "$NUM" =~ ^[1-9][0-9]*$ ]] || die "--num-processes must be a positive integer, got '$NUM'"
[[ -z "$DEVICES" || "$DEVICES" =~ ^[1-9][0-9]*$ ]] || die "bad --devices-per-process '$DEVICES'"
[[ "$GRACE" =~ ^[0-9]+$ ]] || die "bad --grace '$GRACE'"

# Paths relative to the caller's directory; a config path that only exists relative to the
# repository root (configs/x.py from elsewhere) is left for the repository root.
absolute() { case "$1" in /*|gs://*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
WORKDIR="$(absolute "$WORKDIR")"
if [[ -e "$CONFIG" ]]; then CONFIG="$(absolute "$CONFIG")"; fi

if [[ -z "$PORT" ]]; then
  PORT="$("$PY" -c 'import socket; s = socket.socket(); s.bind(("localhost", 0)); print(s.getsockname()[1])')" \
    || die "cannot pick a free port with $PY (give --port)"
fi
[[ "$PORT" =~ ^[0-9]+$ ]] || die "bad --port '$PORT'"

export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"
if [[ -n "$DEVICES" ]]; then
  export XLA_FLAGS="${XLA_FLAGS:+$XLA_FLAGS }--xla_force_host_platform_device_count=$DEVICES"
fi

command_for() {  # The command of process $1, one word per line of the array CMD.
  CMD=("$PY" -m seg2vid_jax.main "--config=$CONFIG" "--workdir=$WORKDIR"
       "--coordinator_address=localhost:$PORT" "--num_processes=$NUM" "--process_id=$1"
       ${EXTRA[@]+"${EXTRA[@]}"})
}

if ((DRY_RUN)); then
  echo "# $NUM processes in $REPO, JAX_PLATFORMS=$JAX_PLATFORMS${XLA_FLAGS:+ XLA_FLAGS=$XLA_FLAGS}"
  for ((i = 0; i < NUM; i++)); do
    command_for "$i"
    printf '%q' "${CMD[0]}"
    printf ' %q' "${CMD[@]:1}"
    echo
  done
  exit 0
fi

cd "$REPO"
prefix_lines() {  # Copies stdin to stdout with "$1" before every line.
  local line
  while IFS= read -r line || [[ -n "$line" ]]; do printf '%s%s\n' "$1" "$line"; done
}

PIDS=()
stop_all() {  # SIGTERM to the processes still running (they checkpoint), SIGKILL after $GRACE s.
  local pid waited=0
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  while ((waited < GRACE)); do
    local alive=0
    for pid in "${PIDS[@]}"; do if kill -0 "$pid" 2>/dev/null; then alive=1; fi; done
    ((alive)) || return 0
    sleep 1
    waited=$((waited + 1))
  done
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}
trap 'echo "local_multiprocess.sh: interrupted, stopping the processes" >&2; stop_all; exit 130' INT TERM

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
for ((i = 0; i < NUM; i++)); do
  command_for "$i"
  # The subshell records the Python pid (to stop it) and exits with Python's exit code once
  # the prefixer has written the last line.
  (
    set +e
    { "${CMD[@]}" 2>&1 & echo $! >"$TMP/pid.$i"; wait $!; } | prefix_lines "[process $i] "
    exit "${PIPESTATUS[0]}"
  ) &
  WAITERS[i]=$!
done
for ((i = 0; i < NUM; i++)); do
  while [[ ! -s "$TMP/pid.$i" ]]; do sleep 0.1; done
  PIDS[i]="$(<"$TMP/pid.$i")"
done

STATUS=0
FINISHED=()
remaining=$NUM
while ((remaining)); do
  for ((i = 0; i < NUM; i++)); do
    [[ -z "${FINISHED[i]:-}" ]] || continue
    kill -0 "${WAITERS[i]}" 2>/dev/null && continue
    code=0
    wait "${WAITERS[i]}" || code=$?
    FINISHED[i]=1
    remaining=$((remaining - 1))
    if ((code != 0)); then
      echo "local_multiprocess.sh: process $i exited with code $code" >&2
      if ((STATUS == 0)); then
        STATUS=$code
        if ((remaining)); then
          echo "local_multiprocess.sh: stopping the other processes" >&2
          stop_all
        fi
      fi
    fi
  done
  ((remaining)) && sleep 0.5
done
if ((STATUS == 0)); then
  echo "local_multiprocess.sh: all $NUM processes finished"
fi
exit "$STATUS"
