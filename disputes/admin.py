from django.contrib import admin

from disputes.models import Dispute
from offerhub.admin import ReadOnlyAdmin


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyAdmin):
    list_display = ("public_id", "order", "opened_by", "reason", "status", "created_at")
    list_filter = ("status", "reason", "opened_by")
    search_fields = ("public_id", "order__public_id")
    list_select_related = ("order",)
