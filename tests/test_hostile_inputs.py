"""benchmarks/hostile_inputs.py on backups (hostile files, round two: E): the hostile backup replayed through
`maskdet restore` in a child process, on SQLite and on a new PostgreSQL database, the database of each child checked
for integrity (a check of the script on tiny files, not of any figure)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def replayed(*args: str) -> list[dict]:
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "hostile_inputs.py"), "--quick", "--only",
                          "empty-rows", "--kinds", "restore", *args], capture_output=True, text=True, timeout=600,
                         cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    return [json.loads(line) for line in run.stdout.splitlines()]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_hostile_backup_is_replayed_through_restore_and_each_database_checked(backend, request):
    lines = replayed(*(["--postgres", request.getfixturevalue("postgres_url")] if backend == "postgresql" else []))
    paths = ["restore", "restore on PostgreSQL"][:1 + (backend == "postgresql")]
    assert [line["baseline"] for line in lines if "baseline" in line] == paths
    assert all(line["outcome"].startswith("Restored into") for line in lines if "baseline" in line)
    files = [line for line in lines if "file" in line]
    assert [line["path"] for line in files] == paths
    assert all(line["outcome"].startswith("error: The backup is damaged: row 1 of tables/meta.jsonl has no key")
               for line in files)
    assert all(line["integrity"] == "ok" for line in lines if "peak_rss_mb" in line)
    assert all(line["within_target"] for line in files)
    assert lines[-1]["databases_intact"] is True and lines[-1]["all_within_1_GiB_and_30_s"] is True
