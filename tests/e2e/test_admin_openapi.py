"""The control plane's OpenAPI document is a valid OpenAPI 3.1 document.

`omg-controlplane openapi` prints it without a database; the same document is served at
`/admin/openapi.json`. The Rust suite checks that every route of the route table is in it.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest
from openapi_spec_validator import validate


def controlplane_bin() -> Path:
    path = Path(os.environ.get("OMG_CONTROLPLANE_BIN", "target/debug/omg-controlplane"))
    if not path.exists():
        pytest.fail(f"{path} not found: build it (cargo build -p omg-controlplane) or set OMG_CONTROLPLANE_BIN")
    return path


def test_openapi_document_is_valid():
    out = subprocess.run([str(controlplane_bin()), "openapi"], capture_output=True, check=True, timeout=60)
    doc = json.loads(out.stdout)
    assert doc["openapi"].startswith("3.1")
    validate(doc)
    assert "/admin/tenants/{tenant_id}/api-keys" in doc["paths"]
    issue = doc["paths"]["/admin/tenants/{tenant_id}/api-keys"]["post"]
    assert issue["requestBody"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/NewKey"
    assert "201" in issue["responses"] and "404" in issue["responses"]
