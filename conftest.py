"""Every async test runs on asyncio and on trio. Hypothesis has no per-example deadline anywhere: a deadline
is a timing assertion, and the suite must pass on a busy machine (scripts/test-under-load)."""

import pytest
from hypothesis import settings

settings.register_profile("butter", deadline=None)
settings.load_profile("butter")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
