"""Platform reads shared by the API and the backoffice."""

from django.db.models import QuerySet

from offerhub.models import AuditLog


def audit_logs_visible(*, marketplace_id: str = "") -> QuerySet[AuditLog]:
    """Audit rows a key may read: its marketplace's, or all of them for a platform key."""
    rows = AuditLog.objects.all()
    return rows.filter(marketplace_id=marketplace_id) if marketplace_id else rows
