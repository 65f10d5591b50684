#!/usr/bin/env bash
# Trains seg2vid_jax on a Cloud TPU VM (a single host or a pod slice) with gcloud: create or
# reuse the TPU VM, install on every worker, run the same command on all workers. See --help.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: launch/tpu_pod.sh --tpu NAME --zone ZONE --workdir gs://BUCKET/PATH [options]
                         [-- extra seg2vid_jax.main flags]

Steps (each gcloud command is printed before it runs):
  1. create  the TPU VM NAME (--accelerator-type, --version) unless it exists already;
  2. ship    this checkout (`git archive` of HEAD plus uncommitted changes of tracked files)
             to every worker with `gcloud compute tpus tpu-vm scp --worker=all`, or with
             --repo URL let every worker `git clone` it;
  3. install on every worker (--worker=all): Python (apt), a venv in ~/seg2vid_venv with
             requirements.txt plus jax[tpu] of the same version, the package (-e), and gcsfuse;
  4. run     on every worker (--worker=all), in ~/seg2vid_jax:
               python -m seg2vid_jax.main --config=CONFIG --workdir=<bucket mount>/PATH \
                   [--config.data_dir=DATA_DIR] --coordinator_address=<worker 0>:8476 \
                   --num_processes=<workers> --process_id=<this worker> [extra flags]
             The worker number and the workers' addresses come from the TPU VM metadata
             server (as jax.distributed reads them), so every worker joins one JAX job.

The workdir is a gs:// bucket path mounted with gcsfuse at ~/gcs/BUCKET on every worker (the
trainer writes through the local file API). DATA_DIR, a TFDS data_dir, may be a gs:// path:
TFDS reads it directly.

Options:
  --tpu NAME               TPU VM name (required)
  --zone ZONE              zone (required unless `gcloud config get compute/zone` is set)
  --project PROJECT        project (default: gcloud's)
  --accelerator-type TYPE  for creating it, e.g. v4-32, v5litepod-16 (default v4-8)
  --version VERSION        TPU software version for creating it (default tpu-ubuntu2204-base)
  --spot                   create a Spot TPU VM
  --workdir gs://B/PATH    checkpoints, summaries, samples, eval (required)
  --data-dir DIR           TFDS data_dir, passed as --config.data_dir (e.g. gs://B/tfds)
  --config PATH            config file in the repository (default configs/cityscapes.py)
  --repo URL [--ref REF]   git clone URL (at REF, default: the default branch) on the workers
                           instead of shipping this checkout
  --python PY              Python on the workers (default python3.11; installed with apt)
  --skip-create            the TPU VM exists: do not describe/create it
  --skip-install           already installed: only run
  --detach                 run under nohup, logs in ~/seg2vid_jax.log on each worker
  --dry-run                print the commands, run nothing
  -h, --help               this help

Example:
  launch/tpu_pod.sh --tpu seg2vid --zone us-central2-b --accelerator-type v4-32 \
      --workdir gs://my-bucket/seg2vid/cityscapes --data-dir gs://my-bucket/tfds -- \
      --config.batch_size=64
EOF
}

die() { echo "tpu_pod.sh: $*" >&2; exit 2; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TPU=
ZONE=
PROJECT=
ACCELERATOR=v4-8
VERSION=tpu-ubuntu2204-base
SPOT=0
WORKDIR=
DATA_DIR=
CONFIG=configs/cityscapes.py
GIT_URL=
GIT_REF=
PY=python3.11
SKIP_CREATE=0
SKIP_INSTALL=0
DETACH=0
DRY_RUN=0
EXTRA=()

while (($#)); do
  case "$1" in
    --tpu|--zone|--project|--accelerator-type|--version|--workdir|--data-dir|--config|--repo|--ref|--python)
      [[ $# -ge 2 ]] || die "$1 needs a value"
      set -- "$1=$2" "${@:3}"
      continue ;;
  esac
  case "$1" in
    --tpu=*) TPU="${1#*=}" ;;
    --zone=*) ZONE="${1#*=}" ;;
    --project=*) PROJECT="${1#*=}" ;;
    --accelerator-type=*) ACCELERATOR="${1#*=}" ;;
    --version=*) VERSION="${1#*=}" ;;
    --spot) SPOT=1 ;;
    --workdir=*) WORKDIR="${1#*=}" ;;
    --data-dir=*) DATA_DIR="${1#*=}" ;;
    --config=*) CONFIG="${1#*=}" ;;
    --repo=*) GIT_URL="${1#*=}" ;;
    --ref=*) GIT_REF="${1#*=}" ;;
    --python=*) PY="${1#*=}" ;;
    --skip-create) SKIP_CREATE=1 ;;
    --skip-install) SKIP_INSTALL=1 ;;
    --detach) DETACH=1 ;;
    --dry-run) DRY_RUN=1 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

[[ -n "$TPU" ]] || die "--tpu NAME is required"
[[ -n "$WORKDIR" ]] || die "--workdir gs://BUCKET/PATH is required"
[[ "$WORKDIR" =~ ^gs://([^/]+)(/(.*))?$ ]] || die "--workdir must be gs://BUCKET[/PATH], got '$WORKDIR'"
BUCKET="${BASH_REMATCH[1]}"
WORKDIR_PATH="${BASH_REMATCH[3]%/}"
if [[ -z "$ZONE" ]] && ((!DRY_RUN)) && command -v gcloud >/dev/null; then
  ZONE="$(gcloud config get-value compute/zone 2>/dev/null || true)"
fi
[[ -n "$ZONE" ]] || die "--zone ZONE is required (or: gcloud config set compute/zone ZONE)"
[[ -f "$REPO/$CONFIG" ]] || die "no config $CONFIG in $REPO (give it relative to the repository)"
if ((!DRY_RUN)); then
  command -v gcloud >/dev/null || die "gcloud is not installed (https://cloud.google.com/sdk)"
fi

q() { printf '%q' "$1"; }  # One shell word, quoted for the workers' bash.
show() {  # Prints a command, as bash that runs it, and runs it unless --dry-run.
  local word
  printf '+ %q' "$1"
  for word in "${@:2}"; do
    if [[ "$word" == --command=*$'\n'* ]]; then  # A script for the workers: shown as a here-doc.
      # shellcheck disable=SC2016  # The $(...) is printed, for the reader's shell.
      printf ' --command="$(cat <<'"'"'EOF'"'"'\n%s\nEOF\n)"' "${word#--command=}"
    else
      printf ' %q' "$word"
    fi
  done
  echo
  ((DRY_RUN)) || "$@"
}

TPU_ARGS=("--zone=$ZONE")
[[ -z "$PROJECT" ]] || TPU_ARGS+=("--project=$PROJECT")

# 1. Create the TPU VM unless it exists.
if ((!SKIP_CREATE)); then
  CREATE=(gcloud compute tpus tpu-vm create "$TPU" "${TPU_ARGS[@]}"
          "--accelerator-type=$ACCELERATOR" "--version=$VERSION")
  ((SPOT)) && CREATE+=(--spot)
  if ((DRY_RUN)); then
    echo "# create the TPU VM unless \`gcloud compute tpus tpu-vm describe $TPU\` finds it:"
    show "${CREATE[@]}"
  elif gcloud compute tpus tpu-vm describe "$TPU" "${TPU_ARGS[@]}" >/dev/null 2>&1; then
    echo "tpu_pod.sh: reusing the TPU VM $TPU"
  else
    show "${CREATE[@]}"
  fi
fi

SSH=(gcloud compute tpus tpu-vm ssh "$TPU" "${TPU_ARGS[@]}" --worker=all)
# shellcheck disable=SC2016  # $HOME, $coordinator, ... are expanded on the workers.
SRC='"$HOME"/seg2vid_jax'
# shellcheck disable=SC2016
VENV='"$HOME"/seg2vid_venv'

# 2 + 3. Ship or clone the code, install on every worker.
if ((!SKIP_INSTALL)); then
  if [[ -z "$GIT_URL" ]]; then
    ARCHIVE="${TMPDIR:-/tmp}/seg2vid_jax_src.$$.tar.gz"
    if ((DRY_RUN)); then
      echo "# pack this checkout (HEAD + uncommitted changes of tracked files):"
      echo "+ git -C $(q "$REPO") archive --format=tar.gz -o $(q "$ARCHIVE") \$(git -C $(q "$REPO") stash create || echo HEAD)"
    else
      rev="$(git -C "$REPO" stash create)" || die "$REPO is not a git checkout: use --repo URL"
      git -C "$REPO" archive --format=tar.gz -o "$ARCHIVE" "${rev:-HEAD}"
      trap 'rm -f "$ARCHIVE"' EXIT
    fi
    show gcloud compute tpus tpu-vm scp "$ARCHIVE" "$TPU:seg2vid_jax_src.tar.gz" "${TPU_ARGS[@]}" --worker=all
    FETCH="rm -rf $SRC && mkdir -p $SRC && tar -xzf \"\$HOME\"/seg2vid_jax_src.tar.gz -C $SRC"
  else
    FETCH="rm -rf $SRC && git clone -q $(q "$GIT_URL") $SRC"
    [[ -z "$GIT_REF" ]] || FETCH+=" && git -C $SRC checkout -q $(q "$GIT_REF")"
  fi
  JAX_VERSION="$(sed -n 's/^jax==\([^ #]*\).*/\1/p' "$REPO/requirements.txt")"
  [[ -n "$JAX_VERSION" ]] || die "no jax==VERSION pin in requirements.txt"
  INSTALL="set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
$FETCH
if ! command -v $(q "$PY") >/dev/null || ! command -v gcsfuse >/dev/null; then
  if ! command -v gcsfuse >/dev/null; then
    curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null
    echo \"deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt gcsfuse-\$(lsb_release -cs) main\" | sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null
  fi
  sudo apt-get update -qq
  sudo apt-get install -y -qq $(q "$PY") $(q "$PY-venv") gcsfuse
fi
$(q "$PY") -m venv $VENV
$VENV/bin/pip install -q --upgrade pip
$VENV/bin/pip install -q -r $SRC/requirements.txt $(q "jax[tpu]==$JAX_VERSION")
$VENV/bin/pip install -q --no-deps -e $SRC
echo \"installed on \$(hostname)\""
  show "${SSH[@]}" "--command=$INSTALL"
fi

# 4. Run the same command on every worker.
MOUNT="\"\$HOME\"/gcs/$(q "$BUCKET")"
MAIN=(-m seg2vid_jax.main "--config=$CONFIG")
[[ -z "$DATA_DIR" ]] || MAIN+=("--config.data_dir=$DATA_DIR")
MAIN+=(${EXTRA[@]+"${EXTRA[@]}"})
MAIN_QUOTED="$VENV/bin/python"
for word in "${MAIN[@]}"; do MAIN_QUOTED+=" $(q "$word")"; done
MAIN_QUOTED+=" --workdir=$MOUNT${WORKDIR_PATH:+/$(q "$WORKDIR_PATH")}"
# shellcheck disable=SC2016
MAIN_QUOTED+=' --coordinator_address="$coordinator":8476 --num_processes="$n" --process_id="$id"'
RUN="set -euo pipefail
meta() { curl -fsS -H 'Metadata-Flavor: Google' \"http://metadata.google.internal/computeMetadata/v1/instance/attributes/\$1\"; }
id=\$(meta agent-worker-number)
endpoints=\$(meta worker-network-endpoints)
n=\$(echo \"\$endpoints\" | tr ',' '\\n' | grep -c .)
coordinator=\$(echo \"\$endpoints\" | cut -d, -f1 | awk -F: '{print \$NF}')
mkdir -p $MOUNT
mountpoint -q $MOUNT || gcsfuse --implicit-dirs --rename-dir-limit=1000000 $(q "$BUCKET") $MOUNT
cd $SRC
echo \"worker \$id of \$n (coordinator \$coordinator) on \$(hostname)\""
if ((DETACH)); then
  RUN+="
nohup $MAIN_QUOTED >\"\$HOME\"/seg2vid_jax.log 2>&1 </dev/null &
echo \"started: tail -f ~/seg2vid_jax.log\""
else
  RUN+="
exec $MAIN_QUOTED"
fi
show "${SSH[@]}" "--command=$RUN"
