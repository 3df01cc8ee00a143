"""The Celery app. Tasks carry the correlation id of the request that queued them."""

import os

from celery import Celery, Task

from offerhub.correlation import correlation_id_new, correlation_id_var, in_task_var

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "offerhub.settings")

CORRELATION_HEADER = "correlation_id"


class CorrelatedTask(Task):
    """Puts the caller's correlation id in the message headers and restores it in the worker."""

    def apply_async(self, args=None, kwargs=None, task_id=None, producer=None, link=None, link_error=None, **options):
        correlation_id = correlation_id_var.get()
        if correlation_id:
            headers = dict(options.get("headers") or {})
            headers.setdefault(CORRELATION_HEADER, correlation_id)
            options["headers"] = headers
        return super().apply_async(args, kwargs, task_id, producer, link, link_error, **options)

    def __call__(self, *args, **kwargs):
        # A worker exposes custom headers as request attributes; eager runs keep them in .headers.
        correlation_id = getattr(self.request, CORRELATION_HEADER, None) or (self.request.headers or {}).get(
            CORRELATION_HEADER
        )
        token = correlation_id_var.set(correlation_id or correlation_id_new())
        in_task = in_task_var.set(True)
        try:
            return super().__call__(*args, **kwargs)
        finally:
            in_task_var.reset(in_task)
            correlation_id_var.reset(token)


app = Celery("offerhub", task_cls=CorrelatedTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
