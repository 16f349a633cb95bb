"""deploy/prometheus/berth-alerts.yml and docs/ops/monitoring.md against the real /metrics.

Every service is started on free ports and its admin endpoint scraped. The alert file must be
a valid Prometheus rule file whose every expression uses only metric names some service really
exposes; the monitoring page must name every metric every service exposes.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator

import pytest
import yaml

from .ops_support import (
    SERVICES,
    metric_families,
    metric_names,
    repo_path,
    scrape,
    start_service,
)

ALERTS = repo_path("deploy", "prometheus", "berth-alerts.yml")
PAGE = repo_path("docs", "ops", "monitoring.md")

#: Series Prometheus makes itself for every target: `up` is how a dead service shows.
PROMETHEUS_OWN = {"up"}

PROMQL_WORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
}


@pytest.fixture(scope="module")
def exposed(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, tuple[set[str], set[str]]]]:
    """{binary: (sample names, family names) on its /metrics}, from freshly started servers."""
    work = tmp_path_factory.mktemp("metrics")
    running = []
    try:
        for name in SERVICES:
            running.append(start_service(pytestconfig, name, work / name))
        texts = {s.name: scrape(s) for s in running}
        yield {n: (metric_names(t), metric_families(t)) for n, t in texts.items()}
    finally:
        for s in running:
            s.process.stop(timeout=40)


SCRAPE = repo_path("docs", "reference", "samples", "prometheus.yml")

#: Scrape job of each service, as the alert file's `up{job=~...}` and labels expect.
JOBS = {
    "berth-cache": "cache-server",
    "berth-blob": "blob-server",
    "berth-query": "query-proxy",
    "berth-logs": "log-collector",
    "berthd": "berthd",
    "berth-router": "berth-router",
}


def test_scrape_config_sample(exposed: dict[str, tuple[set[str], set[str]]]) -> None:
    """The page's scrape config: one job per service, at its default admin port, with an
    operator token for every service whose /metrics wants one."""
    doc = yaml.safe_load(SCRAPE.read_text())
    assert doc["rule_files"] == ["/etc/prometheus/berth-alerts.yml"]
    jobs = {j["job_name"]: j for j in doc["scrape_configs"]}
    assert set(jobs) == set(JOBS), sorted(jobs)
    for job, name in JOBS.items():
        ref = tomllib.loads(repo_path("docs", "reference", "config", f"{name}.toml").read_text())
        port = ref["admin_listen"].rsplit(":", 1)[1]
        assert jobs[job]["static_configs"] == [{"targets": [f"127.0.0.1:{port}"]}], job
        wants_token = name != "berthd"
        assert ("authorization" in jobs[job]) == wants_token, job
        assert re.fullmatch(r"berth-.*|berthd", job)
    assert 'up{job=~"berth-.*|berthd"}' in ALERTS.read_text()


def metrics_in(expr: str) -> set[str]:
    """Metric names an expression selects (functions, keywords and label names left out)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # range and subquery durations
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\b\d[\w.+-]*", " ", e)  # numbers (1e9, 0.99) and durations (5m)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        word = m.group(0)
        rest = e[m.end() :].lstrip()
        if rest.startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def load_rules() -> list[dict[str, object]]:
    doc = yaml.safe_load(ALERTS.read_text())
    assert isinstance(doc, dict) and set(doc) == {"groups"}, "a rule file is {groups: [...]}"
    rules = []
    for group in doc["groups"]:
        assert set(group) <= {"name", "interval", "rules"} and group.get("name"), group
        assert group["rules"], f"group {group['name']} has no rules"
        rules += group["rules"]
    return rules


def test_alert_file_is_a_prometheus_rule_file() -> None:
    names = set()
    for rule in load_rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", rule["alert"]), rule
        assert rule["alert"] not in names, f"alert {rule['alert']} defined twice"
        names.add(rule["alert"])
        assert isinstance(rule["expr"], str) and rule["expr"].strip(), rule
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["expr"]
        if "for" in rule:
            assert re.fullmatch(r"(\d+[smhd])+", rule["for"]), rule["for"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule
        assert rule["annotations"].get("summary"), f"{rule['alert']}: no summary"


def test_every_alert_uses_real_metrics(
    exposed: dict[str, tuple[set[str], set[str]]],
) -> None:
    every = PROMETHEUS_OWN.union(*(samples for samples, _ in exposed.values()))
    for rule in load_rules():
        used = metrics_in(rule["expr"])
        assert used, f"{rule['alert']}: no metric in {rule['expr']!r}"
        unknown = used - every
        assert not unknown, (
            f"{rule['alert']}: {sorted(unknown)} is exposed by no service (expr: {rule['expr']})"
        )


def test_every_service_is_watched(
    exposed: dict[str, tuple[set[str], set[str]]],
) -> None:
    used = set().union(*(metrics_in(r["expr"]) for r in load_rules()))
    for name, (names, _) in exposed.items():
        if name == "berthd":
            continue  # berthd's two gauges say nothing alarming; `up` covers it
        assert used & names, f"no alert looks at {name}'s metrics"


def test_monitoring_page_names_every_metric(
    exposed: dict[str, tuple[set[str], set[str]]],
) -> None:
    text = PAGE.read_text()
    for name, (_, families) in sorted(exposed.items()):
        missing = sorted(n for n in families if f"`{n}`" not in text)
        assert not missing, f"docs/ops/monitoring.md does not list {name}'s {missing}"


def test_metrics_in_understands_promql() -> None:
    got = metrics_in(
        'sum by (app) (rate(berth_router_requests_total{class="5xx"}[5m])) '
        "/ on(app) group_left sum by (app) (rate(berth_router_requests_total[5m])) > 0.05 "
        "and histogram_quantile(0.99, rate(berth_router_request_duration_seconds_bucket[5m]))"
        " > 1e3 unless up offset 5m"
    )
    assert got == {
        "berth_router_requests_total",
        "berth_router_request_duration_seconds_bucket",
        "up",
    }
