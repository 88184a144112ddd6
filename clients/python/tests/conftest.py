import json
import os

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
os.environ.setdefault("VDPAD_BINARY", os.path.join(ROOT, ".build", "debug", "vdpad"))


@pytest.fixture(scope="session")
def openrpc_document():
    with open(os.path.join(ROOT, "docs", "openrpc.json")) as f:
        return json.load(f)
