from django.conf import settings


def site(request) -> dict:
    return {"offerhub_version": settings.VERSION, "sandbox_mode": bool(settings.SANDBOX_PROVIDERS)}
