"""Reads OpenMetrics text on stdin with the Prometheus client's strict
parser and prints its samples as JSON lines: {"name", "labels", "value"},
or exits 1 with the parser's complaint."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

try:
    families = list(text_string_to_metric_families(sys.stdin.read()))
except Exception as e:  # the parser's own message is the point
    print(f"not valid OpenMetrics: {e}", file=sys.stderr)
    sys.exit(1)
for family in families:
    for s in family.samples:
        print(json.dumps({"family": family.name, "type": family.type,
                          "name": s.name, "labels": s.labels, "value": s.value}))
