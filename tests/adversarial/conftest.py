"""Hypothesis profiles of the adversarial fuzzers: ``fuzz`` on a developer's machine, ``ci`` (many more
examples, same bounds) when the environment variable ``CI`` is set, as CI services set it. Each fuzzer takes
its settings from :func:`.strategies.fuzz_settings`; the profiles change nothing for other tests."""

from hypothesis import HealthCheck, settings

settings.register_profile("fuzz", max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", settings.get_profile("fuzz"), max_examples=4800)
