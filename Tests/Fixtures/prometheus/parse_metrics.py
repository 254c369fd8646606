#!/usr/bin/env python3
"""Parses a Prometheus text exposition with the official client's parser and prints every sample
as one JSON object per line: {"name", "labels", "value", "type"}.

    python parse_metrics.py FILE

Exits 1 with the parser's error when the text is not valid exposition format.
"""
import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families

text = open(sys.argv[1], encoding="utf-8").read()
try:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            v = s.value
            print(json.dumps({"name": s.name, "labels": s.labels, "type": family.type,
                              "value": None if math.isnan(v) else v}))
except Exception as e:  # the parser raises ValueError and friends on bad input
    print(f"invalid exposition: {e}", file=sys.stderr)
    sys.exit(1)
