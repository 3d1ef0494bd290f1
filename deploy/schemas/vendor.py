"""Writes the JSON schemas `make deploy-check` validates custom resources against, from
the operators' CustomResourceDefinition files (descriptions dropped: they are most of
the bytes and no part of validation):

    python deploy/schemas/vendor.py path/to/*_clusters.yaml ...

Each file becomes `<group>_<kind>_<version>.json` beside this script. Where they came from
is listed in README.md here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent


def without_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: without_descriptions(value) for key, value in node.items()
                if key != "description"}
    if isinstance(node, list):
        return [without_descriptions(item) for item in node]
    return node


def vendor(crd_path: Path) -> list[Path]:
    crd = yaml.safe_load(crd_path.read_text())
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    written = []
    for version in crd["spec"]["versions"]:
        if not version.get("served", True):
            continue
        schema = without_descriptions(version["schema"]["openAPIV3Schema"])
        target = HERE / f"{group}_{kind}_{version['name']}.json"
        target.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
        written.append(target)
    return written


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        for path in vendor(Path(argument)):
            print(path.name)
