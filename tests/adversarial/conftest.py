"""Hypothesis profiles of the adversarial fuzzers: ``fuzz`` on a developer's machine, ``ci`` (twice the
examples, same bounds) when the environment variable ``CI`` is set, as CI services set it: every CI run draws new
examples, so the runs add up. (Four times cost CI about 3 CPU-minutes of its 10-minute budget.) Each fuzzer takes
its settings from :func:`.strategies.fuzz_settings`; the profiles change nothing for other tests."""

from hypothesis import HealthCheck, settings

settings.register_profile("fuzz", max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", settings.get_profile("fuzz"), max_examples=2400)
