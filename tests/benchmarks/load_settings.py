"""Settings of the load phase's server: the product's, with the bench's URLconf (bench/bare)."""

from offerhub.settings import *  # noqa: F403

ROOT_URLCONF = "tests.benchmarks.load_urls"
