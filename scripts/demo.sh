#!/usr/bin/env bash
# The main job until `cd4ml demo` exists: the foundation of the CD4ML story on the
# bundled grocery world. init -> ingest -> first champion -> a harmful change the
# gate rejects -> a better model -> rollback -> the release history.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd4ml="$root/.venv/bin/cd4ml"
dir="${DEMO_DIR:-$root/build/demo}"
export COLUMNS="${COLUMNS:-120}"

say() { printf '\n\033[1;36m== %s\033[0m\n' "$*"; }

rm -rf "$dir"
say "1. Plumbing: a new project on the grocery world, under git"
"$cd4ml" init "$dir" --example groceries
cd "$dir"
git init -q && git add -A
git -c user.name=cd4ml -c user.email=demo@cd4ml.invalid commit -qm "groceries project"

say "2. Versioned, validated data (a Delta table)"
"$cd4ml" data ingest
"$cd4ml" data versions

say "3. First pipeline run (a quick 100-tree model): train, evaluate, gate -> first champion"
"$cd4ml" run --set model.params.n_estimators=100

say "4. A harmful change (5 trees): the gate rejects it, champion unchanged (exit 3 expected)"
set +e
"$cd4ml" run --set model.params.n_estimators=5
rc=$?
set -e
[ "$rc" -eq 3 ] || { echo "expected exit code 3 from the gate, got $rc" >&2; exit 1; }

say "5. An improvement (the project's 300 trees): passes the gate, becomes champion"
"$cd4ml" run

say "6. Undo: roll production back to the previous champion in one step"
"$cd4ml" rollback --reason "demo: undo the last release"
"$cd4ml" releases
"$cd4ml" releases --history
say "Done. Project at $dir (MLflow store: $dir/.cd4ml/mlflow.db)"
