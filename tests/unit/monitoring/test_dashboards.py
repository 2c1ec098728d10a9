"""The generated dashboards: valid against the schema version generated, every
panel's query valid PromQL (promtool parses them), the CLI writes them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ds01.cli import main
from ds01.config import load_policy
from ds01.monitoring import dashboards

REPO = Path(__file__).resolve().parents[3]
PROMTOOL = shutil.which("promtool")


@pytest.fixture(scope="module", params=["config/resource-allocation.yaml", "tests/vm/policy.yaml"])
def policy(request):
    return load_policy(REPO / request.param)


def test_every_dashboard_checks_against_its_schema_version(policy):
    boards = dashboards.dashboards(policy)
    assert set(boards) == {f"ds01-{n}.json" for n in ("overview", "users", "roles", "storage", "jobs")}
    for name, board in boards.items():
        assert dashboards.check(board) == [], name
        assert board["schemaVersion"] == dashboards.SCHEMA_VERSION
        json.dumps(board)  # serialisable as it is


def test_check_finds_what_is_wrong():
    board = dashboards.dashboards(load_policy(REPO / "tests/vm/policy.yaml"))["ds01-jobs.json"]
    bad = {**board, "schemaVersion": 16, "panels": [*board["panels"], {**board["panels"][0], "targets": [{"refId": "A"}]}]}
    problems = dashboards.check(bad)
    assert "schemaVersion 16 is not 39" in problems
    assert "panel ids are not unique" in problems
    assert any("every target needs expr" in p for p in problems)


def test_the_overview_shows_the_units_readings_and_the_allocators_decision_time(policy):
    queries = [q for _, q in dashboards.panel_queries(dashboards.dashboards(policy)["ds01-overview.json"])]
    assert {"ds01_gpu_unit_utilization_percent", "ds01_gpu_unit_memory_used_bytes"} <= set(queries)
    assert any("ds01_gpu_decision_seconds" in q for q in queries)


@pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian: prometheus) missing")
def test_every_panel_query_is_valid_promql(policy, tmp_path):
    # promtool parses recording rules' expressions: one rule per panel query
    queries = [q for b in dashboards.dashboards(policy).values() for _, q in dashboards.panel_queries(b)]
    rules = {"groups": [{"name": "panels", "rules": [{"record": f"panel_{i}", "expr": q} for i, q in enumerate(queries)]}]}
    (tmp_path / "panels.yml").write_text(yaml.safe_dump(rules))
    out = subprocess.run([PROMTOOL, "check", "rules", str(tmp_path / "panels.yml")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{len(queries)} rules found" in out.stdout


def test_cli_writes_the_dashboards(tmp_path, capsys):
    assert main(["monitoring", "dashboards", "--policy", str(REPO / "tests/vm/policy.yaml"), "--out", str(tmp_path)]) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert len(written) == 5 and all(json.loads((tmp_path / n).read_text())["panels"] for n in written)
    provider = json.loads(dashboards.provider_yaml().split("\n", 1)[1])
    assert provider["providers"][0]["options"]["path"] == dashboards.DASHBOARD_DIR
