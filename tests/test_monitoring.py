"""Monitoring assets in monitoring/: the Prometheus alerting rules, their unit tests and the example config pass
promtool; the Grafana dashboard is valid, every panel queries something and every query parses; and every
`xdpfeed_*` name used anywhere in them is one the exporter serves (EXPECTED), while every served name is shown.

promtool comes out of Debian's `prometheus` package (scripts/ensure-promtool.sh); the promtool tests are skipped,
with the reason, without it.
"""

import json
import os
import re
import subprocess

import pytest

from conftest import REPO

MONITORING = os.path.join(REPO, "monitoring")
RULES = os.path.join(MONITORING, "prometheus", "xdpfeed-alerts.yml")
RULES_TESTS = os.path.join(MONITORING, "prometheus", "xdpfeed-alerts.test.yml")
PROMETHEUS_CONFIG = os.path.join(MONITORING, "prometheus", "prometheus.example.yml")
DASHBOARD = os.path.join(MONITORING, "grafana", "xdpfeed.json")
README = os.path.join(MONITORING, "README.md")

# Every metric the exporter serves (multicast/feed/metrics.py). Histograms are listed by their base name; their
# _bucket, _sum and _count series are accepted too.
EXPECTED = frozenset({
    # capture
    "xdpfeed_receive_packets_total",
    "xdpfeed_receive_bytes_total",
    "xdpfeed_receive_drop_total",
    "xdpfeed_source_info",
    # framing
    "xdpfeed_frames_skipped_total",
    "xdpfeed_malformed_packets_total",
    "xdpfeed_messages_total",
    "xdpfeed_unknown_message_types_total",
    # sequencing
    "xdpfeed_delivered_messages_total",
    "xdpfeed_sequence_gaps_total",
    "xdpfeed_gap_messages_total",
    "xdpfeed_duplicate_messages_total",
    "xdpfeed_hold_queue_messages",
    "xdpfeed_hold_overflow_messages_total",
    "xdpfeed_next_sequence",
    "xdpfeed_feed_state",
    "xdpfeed_end_of_session",
    "xdpfeed_lost_messages",
    "xdpfeed_stale_episodes_total",
    "xdpfeed_stale_seconds_total",
    "xdpfeed_stale_longest_seconds",
    # latency by stage
    "xdpfeed_stage_latency_seconds",
    # a live parallel run (--shadow)
    "xdpfeed_shadow_compared_messages_total",
    "xdpfeed_shadow_divergent_messages_total",
    "xdpfeed_shadow_uncompared_messages_total",
    "xdpfeed_shadow_first_total",
    "xdpfeed_shadow_lag_messages",
    "xdpfeed_shadow_receive_difference_seconds",
    # snapshots (late join, resync)
    "xdpfeed_snapshots_total",
    "xdpfeed_snapshot_messages_total",
    "xdpfeed_snapshot_skipped_messages_total",
    # consumers
    "xdpfeed_consumer_batches_total",
    "xdpfeed_consumer_errors_total",
    "xdpfeed_consumer_detached",
    # outputs
    "xdpfeed_output_messages_total",
    "xdpfeed_output_bytes_total",
    "xdpfeed_output_failed",
    "xdpfeed_output_subscribers",
    "xdpfeed_output_dropped_messages_total",
    "xdpfeed_output_pending_messages",
    "xdpfeed_output_twin_messages_total",
    "xdpfeed_output_conflicts_total",
    "xdpfeed_output_retries_total",
    "xdpfeed_output_reconnects_total",
    "xdpfeed_output_connected",
    "xdpfeed_output_gap_messages_total",
    # several feeds: the consolidated book
    "xdpfeed_consolidated_events_total",
    "xdpfeed_consolidated_crossings_total",
    "xdpfeed_consolidated_crossed_symbols",
    "xdpfeed_consolidated_venue_included",
    "xdpfeed_consolidated_symbols",
    # recovery
    "xdpfeed_recovery_requests_total",
    "xdpfeed_recovered_messages_total",
    "xdpfeed_recovery_failures_total",
    "xdpfeed_recovery_seconds",
    # arbitration
    "xdpfeed_line_packets_total",
    "xdpfeed_line_first_messages_total",
    "xdpfeed_line_duplicate_messages_total",
    "xdpfeed_line_gaps_total",
    "xdpfeed_line_last_packet_age_seconds",
    # book
    "xdpfeed_book_live_orders",
    "xdpfeed_book_stale_stocks",
    "xdpfeed_book_top_of_book_events_total",
    # latency
    "xdpfeed_delivery_latency_seconds",
})
HISTOGRAMS = frozenset({"xdpfeed_recovery_seconds", "xdpfeed_delivery_latency_seconds",
                        "xdpfeed_stage_latency_seconds", "xdpfeed_shadow_receive_difference_seconds"})

# The alerts the runbook promises; the rules file may have more.
REQUIRED_ALERTS = {
    "XdpfeedFeedStale", "XdpfeedGapRateHigh", "XdpfeedRecoveryFailures", "XdpfeedLineSilent",
    "XdpfeedRingDrops", "XdpfeedMessagesLost", "XdpfeedNoData",
}

NAME = re.compile(r"(?<![A-Za-z0-9_])xdpfeed_[a-z0-9_]+")
# Grafana's variables, replaced by values Prometheus accepts to check that every dashboard query parses.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$feed": ".*", "$instance": ".*"}


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def served(name):
    if name in EXPECTED:
        return True
    base, _, suffix = name.rpartition("_")
    return suffix in ("bucket", "sum", "count") and base in HISTOGRAMS


def run_promtool(promtool, *args, cwd=None):
    res = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120, cwd=cwd)
    assert res.returncode == 0, f"promtool {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}"
    return res.stdout + res.stderr


@pytest.fixture(scope="module")
def dashboard():
    return json.loads(read(DASHBOARD))


def panels_of(dashboard):
    """Every panel, including those inside collapsed rows."""
    out = []
    for p in dashboard["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def queries(dashboard):
    """(where, PromQL) for every panel target, template variable and annotation query."""
    out = []
    for p in panels_of(dashboard):
        for t in p.get("targets", []):
            out.append((f"panel {p['id']} {p['title']!r} {t['refId']}", t["expr"]))
    for v in dashboard["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]
            out.append((f"variable {v['name']}", q["query"] if isinstance(q, dict) else q))
    for a in dashboard["annotations"]["list"]:
        if "expr" in a:
            out.append((f"annotation {a['name']!r}", a["expr"]))
    return out


def alert_blocks():
    """{alert name: the text of its rule} from the rules file, split at each `- alert:`."""
    parts = re.split(r"^\s*- alert:\s*", read(RULES), flags=re.M)[1:]
    return {part.split(None, 1)[0]: part for part in parts}


# -- Prometheus ------------------------------------------------------------------------------------------------


def test_promtool_check_rules(promtool):
    out = run_promtool(promtool, "check", "rules", RULES)
    assert f"SUCCESS: {len(alert_blocks())} rules found" in out


def test_promtool_rule_unit_tests(promtool):
    # The test file names the rules file relative to itself.
    out = run_promtool(promtool, "test", "rules", os.path.basename(RULES_TESTS), cwd=os.path.dirname(RULES_TESTS))
    assert "SUCCESS" in out


def test_promtool_check_example_config(promtool, tmp_path):
    # From another directory: rule_files must resolve relative to the config file, not the working directory.
    out = run_promtool(promtool, "check", "config", PROMETHEUS_CONFIG, cwd=tmp_path)
    assert "1 rule files found" in out
    assert f"SUCCESS: {len(alert_blocks())} rules found" in out
    config = read(PROMETHEUS_CONFIG)
    assert re.search(r"job_name:\s*xdpfeed\b", config)
    assert '"127.0.0.1:9464"' in config


def test_rules_have_severity_summary_and_description():
    blocks = alert_blocks()
    assert REQUIRED_ALERTS <= set(blocks), REQUIRED_ALERTS - set(blocks)
    assert re.search(r"^\s*- name:\s*xdpfeed\s*$", read(RULES), flags=re.M)
    for name, text in blocks.items():
        assert re.fullmatch(r"Xdpfeed[A-Z][A-Za-z]+", name), name
        assert re.search(r"^\s+severity:\s*(critical|warning)\s*$", text, flags=re.M), name
        for annotation in ("summary", "description"):
            m = re.search(rf"^\s+{annotation}:\s*(.+(?:\n\s{{12,}}\S.*)*)", text, flags=re.M)
            assert m, f"{name} has no {annotation}"
            assert "{{ $labels." in m.group(1) or name == "XdpfeedNoData", f"{name} {annotation} names no label"


def test_every_alert_is_unit_tested_and_has_a_runbook():
    tested = set(re.findall(r"^\s*alertname:\s*(\w+)", read(RULES_TESTS), flags=re.M))
    runbook = set(re.findall(r"^#+\s*(Xdpfeed\w+)", read(README), flags=re.M))
    for name in alert_blocks():
        assert name in tested, f"{name} has no promtool unit test"
        assert name in runbook, f"{name} has no runbook section in monitoring/README.md"


def test_line_silent_pairs_lines_of_the_same_feed():
    # The two operands are the same metric: without a matching clause `and` would pair A with A (never both
    # > 5 and < 2), so it must ignore the line label. on(feed) alone would pair the lines of one feed across
    # two handlers (the unit test's "ha" case), so on() must name the instance too.
    expr = alert_blocks()["XdpfeedLineSilent"]
    on = re.search(r"\band\s+on\s*\(([^)]*)\)", expr)
    assert re.search(r"\band\s+ignoring\s*\(\s*line\s*\)", expr) or (
        on and {"feed", "instance"} <= set(re.findall(r"\w+", on.group(1)))), expr


# -- Grafana -----------------------------------------------------------------------------------------------------


def test_dashboard_loads_with_datasource_and_feed_variables(dashboard):
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["title"] and dashboard["uid"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    ds = variables["DS_PROMETHEUS"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    feed = variables["feed"]
    query = feed["query"]["query"] if isinstance(feed["query"], dict) else feed["query"]
    assert feed["type"] == "query"
    assert re.sub(r"\s", "", query) == "label_values(xdpfeed_delivered_messages_total,feed)"


def test_every_panel_has_a_target_and_a_place(dashboard):
    panels = panels_of(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    cells = {}
    for p in panels:
        g = p["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and 0 <= g["x"] and g["x"] + g["w"] <= 24, (p["title"], g)
        for y in range(g["y"], g["y"] + g["h"]):
            for x in range(g["x"], g["x"] + g["w"]):
                assert (x, y) not in cells, f"{p['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = p["title"]
        if p["type"] == "row":
            continue
        assert p.get("targets"), f"panel {p['title']!r} has no target"
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["expr"].strip(), f"panel {p['title']!r} {t['refId']} has an empty query"
            assert t["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]


def test_dashboard_queries_parse(dashboard, promtool, tmp_path):
    # Every query becomes a recording rule once Grafana's variables are replaced; promtool parses them all.
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, (where, expr) in enumerate(queries(dashboard)):
        for var, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"{where}: unknown variable in {expr}"
        if expr.startswith("label_values("):
            expr = re.fullmatch(r"label_values\((.*),\s*\w+\)", expr).group(1)
        lines += [f"      - record: dashboard:query_{i}", f"        expr: {json.dumps(expr)}"]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text("\n".join(lines) + "\n")
    run_promtool(promtool, "check", "rules", str(path))


# -- Names -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [DASHBOARD, RULES, RULES_TESTS, README], ids=os.path.basename)
def test_every_metric_name_is_served(path):
    names = set(NAME.findall(read(path)))
    assert names, path
    unknown = sorted(n for n in names if not served(n))
    assert not unknown, f"{os.path.relpath(path, REPO)} uses names the exporter does not serve: {unknown}"


def test_dashboard_shows_every_served_metric(dashboard):
    used = set()
    for _, expr in queries(dashboard):
        for name in NAME.findall(expr):
            base, _, suffix = name.rpartition("_")
            used.add(base if suffix in ("bucket", "sum", "count") and base in HISTOGRAMS else name)
    assert not EXPECTED - used, f"not on the dashboard: {sorted(EXPECTED - used)}"


def test_expected_names_are_what_the_exporter_serves():
    """The dashboard's and the rules' names are exactly the families multicast/feed/metrics.py serves
    (test_metrics checks a live scrape has every one of them)."""
    from xdpfeed.multicast.feed.metrics import CONSOLIDATED_METRIC_NAMES, METRIC_NAMES, SHADOW_METRIC_NAMES

    assert set(EXPECTED) == set(METRIC_NAMES) | set(CONSOLIDATED_METRIC_NAMES) | set(SHADOW_METRIC_NAMES)
