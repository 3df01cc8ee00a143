# Importing the Celery app here makes @shared_task use it in every process.
from offerhub.celery import app as celery_app

__all__ = ("celery_app",)
