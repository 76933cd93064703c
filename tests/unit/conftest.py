"""Shared by the unit tests: the API schemas (generated once per session)."""
import pytest

from nanokube.api.schema import load_schemas


@pytest.fixture(scope="session")
def schemas(tmp_path_factory):
    return load_schemas(tmp_path_factory.mktemp("schemas"))
