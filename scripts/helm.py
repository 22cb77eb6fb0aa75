#!/usr/bin/env python3
"""Helm's engine without a helm binary or a cluster (PyPI helm-python-sdk, the Helm v4 SDK),
for the chart's tests:

  helm.py render CHART RELEASE NAMESPACE [VALUES_JSON]   the rendered templates, as JSON
                                                         {template path: manifest}
  helm.py lint CHART [VALUES_JSON]                       helm lint --strict; its report as JSON
  helm.py validate CHART VALUES_JSON                     values.schema.json; exit 1 naming
                                                         the field that breaks it

Errors go to stderr with exit status 1.
"""

import json
import sys

import helm_python as helm


def values(argv, i):
    return json.loads(argv[i]) if len(argv) > i else {}


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    command, chart = argv[1], argv[2]
    try:
        if command == "render":
            rendered = helm.Chart.load(chart).render(
                values(argv, 5), name=argv[3], namespace=argv[4], is_install=True
            )
            json.dump(rendered, sys.stdout)
        elif command == "lint":
            json.dump(helm.lint(chart, values(argv, 3), strict=True), sys.stdout)
        elif command == "validate":
            helm.Chart.load(chart).validate_schema(values(argv, 3))
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except helm.HelmError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
