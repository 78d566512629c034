"""The project's own tests (`feature_tests:` in cd4ml.yaml), run by pytest before anything is trained."""

from __future__ import annotations

from pathlib import Path

from cd4ml.config import Project
from cd4ml.errors import FeatureTestsFailed


class FeatureTests:
    """The project's own tests (pytest, in a child process), started at once and waited for before
    training: a failing test stops the pipeline before anything is trained or registered."""

    def __init__(self, project: Project) -> None:
        import subprocess
        import sys

        self.folder = project.config.feature_tests
        self.proc = None
        if self.folder and project.resolve(self.folder).exists():
            _forget_bytecode(project, project.resolve(self.folder))
            self.proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", self.folder],
                                         cwd=project.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def wait(self) -> str | None:
        """pytest's summary line (None without a tests folder); raises FeatureTestsFailed."""
        if self.proc is None:
            return None
        try:
            stdout, stderr = self.proc.communicate(timeout=900)
        finally:
            self.stop()
        lines = stdout.strip().splitlines()
        summary = lines[-1] if lines else stderr.strip()[-500:]
        if self.proc.returncode not in (0, 5):  # 5: no tests collected
            tail = "\n".join(lines[-25:])
            raise FeatureTestsFailed(f"the project's tests in {self.folder}/ failed ({summary}); the pipeline "
                                     f"stopped before training\n{tail}")
        return summary


def _forget_bytecode(project: Project, tests: Path) -> None:
    """Remove the compiled copies of the project's own modules (its top folder, its feature packages, its
    tests). Python reuses one while the source's modification second and size are unchanged: a fix made
    and reverted within a second (`git revert` of a one-character change) would be tested as before."""
    folders = [project.root / "__pycache__", *tests.rglob("__pycache__")]
    for top in {spec.partition(":")[0].split(".")[0] for spec in project.config.features.custom}:
        if (project.root / top).is_dir():
            folders += (project.root / top).rglob("__pycache__")
    for folder in folders:
        for compiled in folder.glob("*.pyc"):
            compiled.unlink(missing_ok=True)
