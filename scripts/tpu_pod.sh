#!/usr/bin/env bash
# Runs one command on every host of a Cloud TPU VM pod (one process per host), from a
# machine with the gcloud CLI. Workdirs should be on gs:// so every host sees the same one.
#
#   scripts/tpu_pod.sh setup TPU_NAME ZONE
#       copies this repository to every host and installs it with jax[tpu]
#   scripts/tpu_pod.sh run TPU_NAME ZONE -- python train.py --config configs/... --workdir gs://...
#       runs the command on all hosts at once; jax.distributed.initialize() finds the pod
#
# Stop a run with Ctrl-C; restarting the same `run` command resumes from the last checkpoint.
set -euo pipefail

usage() { sed -n '2,12p' "$0"; exit 2; }
[ $# -ge 3 ] || usage
action=$1 name=$2 zone=$3
shift 3
repo_dir=squeezemobile_jax
ssh_all() { gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker=all --command "$1"; }

case "$action" in
  setup)
    root=$(cd "$(dirname "$0")/.." && pwd)
    tar -C "$root" --exclude=.git --exclude=workdirs -czf /tmp/$repo_dir.tgz .
    gcloud compute tpus tpu-vm scp /tmp/$repo_dir.tgz "$name:" --zone "$zone" --worker=all
    ssh_all "mkdir -p $repo_dir && tar -C $repo_dir -xzf $repo_dir.tgz && cd $repo_dir && \
      pip install -q 'jax[tpu]' gcsfs google-cloud-storage -r requirements.txt"
    ;;
  run)
    [ "${1:-}" = "--" ] && shift
    [ $# -ge 1 ] || usage
    command=$(printf '%q ' "$@")
    ssh_all "cd $repo_dir && $command --config.distributed.initialize=true"
    ;;
  *) usage ;;
esac
