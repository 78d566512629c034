#!/usr/bin/env bash
# cd4ml's jobs, run by this project's CI pipeline file (written by `cd4ml ci init`):
#
#   bash ci/cd4ml.sh test      the project's own tests (tests/), when it has any
#   bash ci/cd4ml.sh release   ingest and run: the gate's verdict is the job's status (exit 3: the model
#                              failed the gate); a model that passes is promoted (registry.auto_promote)
#   bash ci/cd4ml.sh check     the same, never promoting (pull and merge requests)
#   bash ci/cd4ml.sh retrain   the retraining check; only when it says retrain (exit 5): refresh the data
#                              from production and release
#
# A CI machine's own files are gone when the job ends: set MLFLOW_TRACKING_URI (a CI secret) to the
# team's MLflow server, so the registry, the champion and the release history outlive the job.
# `retrain` reads the prediction store: run it on the machine that serves (a self-hosted runner), or
# where monitoring.store is shared. What changed (`cd4ml diff <champion before> <new>`, Markdown) is
# appended to $CD4ML_SUMMARY (default: GitHub's job summary, else cd4ml-diff.md).
set -euo pipefail
summary="${CD4ML_SUMMARY:-${GITHUB_STEP_SUMMARY:-cd4ml-diff.md}}"

champion() {  # the champion's version, or nothing
  cd4ml releases --json | python3 -c 'import json, sys; print(next((r["version"] for r in json.load(sys.stdin) if r["champion"]), ""))'
}

release() {  # "$@": more options of cd4ml run
  local before after status=0
  before="$(champion)"
  cd4ml data ingest
  cd4ml run --json "$@" > cd4ml-run.json || status=$?
  after="$(python3 -c 'import json; print(json.load(open("cd4ml-run.json")).get("version") or "")' 2>/dev/null || true)"
  if [ -n "$before" ] && [ -n "$after" ] && [ "$before" != "$after" ]; then
    cd4ml diff "$before" "$after" --md | tee -a "$summary"
  fi
  return "$status"
}

case "${1:-}" in
  test)
    if [ -d tests ]; then python3 -m pytest -q tests; fi ;;
  release)
    release ;;
  check)
    release --no-promote ;;
  retrain)
    status=0
    cd4ml monitor --check || status=$?
    if [ "$status" -eq 5 ]; then cd4ml data refresh && release; else exit "$status"; fi ;;
  *)
    echo "usage: bash ci/cd4ml.sh test|release|check|retrain" >&2
    exit 2 ;;
esac
