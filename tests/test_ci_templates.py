"""`cd4ml ci init` / `cd4ml init --ci` (issue 20): a project's pipeline for GitHub Actions, GitLab CI/CD and Jenkins.
The GitHub and GitLab files are checked against their published JSON schemas (check-jsonschema's copies: offline),
every cd4ml command line the jobs run is parsed by the real CLI, and the jobs script runs for real on a project."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cd4ml.scaffold import CI_FILES
from helpers import SMALL_MODEL, cli, edit_yaml, git_init, shrink_grocery_project

SCHEMAS = {"github": "vendor.github-workflows", "gitlab": "vendor.gitlab-ci"}


def _project(root: Path, system: str) -> Path:
    cli(root.parent, "init", str(root), "--example", "groceries", "--ci", system, check=0)
    return root


@pytest.mark.parametrize("system", sorted(SCHEMAS))
def test_the_pipeline_file_is_valid_for_its_ci_system(tmp_path: Path, system: str) -> None:
    root = _project(tmp_path / "shop", system)
    pipeline = root / CI_FILES[system][0]
    checked = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", SCHEMAS[system],
                              str(pipeline)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # A file the schema refuses is refused: the check can fail.
    broken = tmp_path / pipeline.name
    broken.write_text(pipeline.read_text().replace("script:", "scripts:", 1).replace("runs-on:", "run-on:", 1))
    refused = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", SCHEMAS[system],
                              str(broken)], capture_output=True, text=True)
    assert refused.returncode == 1, refused.stdout


def _command_lines(text: str) -> list[list[str]]:
    """Each `cd4ml ...` invocation in a shell text, as arguments (shell variables as placeholders)."""
    lines = []
    for match in re.finditer(r"(?<![\w-])cd4ml ((?:[\w.=-]+|\"\$[^\"]+\"|\"\$@\"| )+)", text):
        words = shlex.split(match.group(1).replace('"$@"', "").replace('"$before"', "1").replace('"$after"', "2"))
        if words and not words[0].startswith(("ci/", "-")) and words[0] != "diff:":
            lines.append(words)
    return lines


def test_every_cd4ml_command_the_jobs_run_parses_with_the_real_cli(tmp_path: Path) -> None:
    root = _project(tmp_path / "shop", "jenkins")
    text = (root / "ci" / "cd4ml.sh").read_text()
    found = _command_lines(text)
    assert {" ".join(w[:2]) for w in found} >= {"releases --json", "data ingest", "run --json", "diff 1",
                                               "monitor --check", "data refresh"}, found
    from cd4ml.cli import app  # here, not at collection: helpers.prepare_in_process_cli makes its consoles

    runner = CliRunner()
    # Every argument is parsed before --help (eager) answers: an option the CLI does not take fails the parse.
    for words in found + [["run", "--json", "--no-promote"]]:
        parsed = runner.invoke(app, [*words, "--help"])
        assert parsed.exit_code == 0, (words, parsed.output)
    refused = runner.invoke(app, ["run", "--jsn", "--help"])  # the parse can fail
    assert refused.exit_code == 2 and "No such option" in refused.output


@pytest.mark.slow
def test_the_jobs_release_check_and_refuse_as_their_exit_codes_say(tmp_path: Path) -> None:
    root = _project(tmp_path / "shop", "github")
    shrink_grocery_project(root)
    git_init(root)
    bin_dir = str(Path(sys.executable).parent)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CD4ML_SUMMARY": str(root / "summary.md"), "HOME": str(tmp_path)}

    def job(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "ci/cd4ml.sh", name], cwd=root, env=env, capture_output=True, text=True)

    first = job("release")
    assert first.returncode == 0, first.stdout + first.stderr
    assert '"promoted": true' in (root / "cd4ml-run.json").read_text()
    assert not (root / "summary.md").exists()  # no champion before: nothing to compare
    # A pull request whose model is worse: the check job fails with the gate's exit code, the champion stays.
    edit_yaml(root, model__params={**SMALL_MODEL, "n_estimators": 2})
    checked = job("check")
    assert checked.returncode == 3, checked.stdout + checked.stderr
    assert "| nwrmsle |" in (root / "summary.md").read_text()  # what changed, against the champion
    assert '"promoted": false' in (root / "cd4ml-run.json").read_text()
    assert job("retrain").returncode == 0  # no production traffic yet: nothing is due
    assert job("nonsense").returncode == 2
