"""`cd4ml diff A B` (issue 20): what changed between two releases, from their records alone."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from helpers import cli, commit_all

SUBJECT = "paydays: [bold]explained[/] | in a <b>comment</b>"


def _second_release(root: Path) -> None:
    """Version 2: a commit that changes the feature code, and fewer trees for this run only."""
    features = root / "features.py"
    features.write_text(features.read_text() + "\n# paydays are the 15th and the last day of the month\n")
    commit_all(root, SUBJECT)
    cli(root, "run", "--no-promote", "--set", "model.params.n_estimators=7")  # may be rejected: either is a release


def test_diff_shows_config_data_code_metrics_slices_and_verdicts(champion_shop: Path) -> None:
    root = champion_shop
    _second_release(root)
    out = json.loads(cli(root, "diff", "champion", "2", "--json", check=0).stdout)
    assert (out["a"]["version"], out["b"]["version"]) == ("1", "2")
    assert out["a"]["gate"] == "passed" and out["b"]["gate"] in ("passed", "rejected")
    assert out["a"]["data_version"] == out["b"]["data_version"] == 0 and out["a"]["data_rows"] > 0
    assert out["a"]["code_digest"] != out["b"]["code_digest"]
    config = {c["name"]: (c["a"], c["b"]) for c in out["config"]}
    assert config["model.params.n_estimators"][1] == 7 and len(config) == 1, config
    assert out["metrics"][0]["name"] == "nwrmsle"  # the primary first
    nwrmsle = out["metrics"][0]
    assert nwrmsle["change"] == (nwrmsle["b"] - nwrmsle["a"]) / nwrmsle["a"] and nwrmsle["change"] > 0
    assert out["slices"] and all(c["name"].startswith("family=") and c["a"] != c["b"] for c in out["slices"])
    assert [c.split(" ", 1)[1] for c in out["commits"]] == [SUBJECT] and out["files"] == ["features.py"]

    text = cli(root, "diff", "1", "2", check=0).stdout
    assert SUBJECT in text and "model.params.n_estimators" in text  # markup in a subject is shown as text
    md = cli(root, "diff", "1", "2", "--md", check=0).stdout
    assert md.startswith("### cd4ml diff: version 1 -> 2") and "| nwrmsle |" in md
    # Literal text in the comment: no table broken by a pipe, no markup, no HTML.
    assert "paydays: \\[bold\\]explained\\[/\\] \\| in a &lt;b&gt;comment&lt;/b&gt;" in md and "<b>" not in md

    missing = cli(root, "diff", "1", "12", check=1)
    assert "no version '12' (known: 1, 2)" in missing.stderr


def test_a_commit_no_longer_in_the_repository_is_named(champion_shop: Path) -> None:
    root = champion_shop
    _second_release(root)
    git = lambda *args: subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)  # noqa: E731
    git("reset", "-q", "--hard", "HEAD~1")  # history rewritten: version 2's commit is gone
    git("reflog", "expire", "--expire=now", "--all")
    git("gc", "-q", "--prune=now")
    out = json.loads(cli(root, "diff", "1", "2", "--json", check=0).stdout)
    assert out["commits"] == [] and "is not in this repository" in out["code_note"], out["code_note"]
    assert out["b"]["commit"][:8] in out["code_note"]
