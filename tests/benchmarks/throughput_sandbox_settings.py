"""Settings of the throughput phase's sandbox process: development settings, the sandbox mounted
under /providers/ (the platform refuses /sandbox/ provider URLs with DEBUG off), no rate limit."""

from offerhub.settings import *  # noqa: F403

ROOT_URLCONF = "tests.benchmarks.throughput_sandbox_urls"
SANDBOX_TRUSTLESS_WORK_RATE_LIMIT = 10**9
