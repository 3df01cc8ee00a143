"""The sandbox providers alone, under /providers/ (tests/benchmarks/throughput.py)."""

from django.urls import include, path

urlpatterns = [path("providers/", include("sandbox.urls"))]
