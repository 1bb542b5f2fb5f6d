#!/bin/sh
# Fuzz one target for a while, one process:  sh run_fuzz.sh TARGET SECONDS [WORKDIR]
# TARGET: safetensors | torch_zip | json_docs | cli. New inputs go to WORKDIR/TARGET (the
# seed corpus here is read, never written); each new kind of crash is kept in
# WORKDIR/found (input + traceback) and fuzzing goes on; hangs and out-of-memory stop it
# with an artifact in WORKDIR/artifacts.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
target=$1
seconds=$2
work=${3:-/tmp/bilin-fuzz-work}
case $target in
  safetensors) dict=safetensors.dict ;;
  cli) dict=cli.dict ;;
  *) dict=json.dict ;;
esac
mkdir -p "$work/$target" "$work/found" "$work/artifacts"
BILIN_FUZZ_KEEP_GOING=1 BILIN_FUZZ_FOUND="$work/found" \
  python "$here/fuzz_$target.py" "$work/$target" "$here/corpus/$target" \
  -dict="$here/dicts/$dict" -timeout=20 -rss_limit_mb=3072 -max_total_time="$seconds" \
  -artifact_prefix="$work/artifacts/$target-" -print_final_stats=1
