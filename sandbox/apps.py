from django.apps import AppConfig


class SandboxConfig(AppConfig):
    """Local stand-ins speaking the HTTP APIs of Trustless Work, Airtm and Horizon.

    Mounted only when OFFERHUB_SANDBOX is on; production code reaches it over HTTP
    through the same base URLs it uses for the real services, never by import.
    """

    name = "sandbox"
    verbose_name = "Sandbox providers"
