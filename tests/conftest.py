"""Shared test settings."""

from hypothesis import settings

# The suite shares two cores with servers it starts: a property test's per-example deadline
# measures the machine's load, not the code, so it is off (each test still has its timeout).
settings.register_profile("feedit", deadline=None)
settings.load_profile("feedit")
