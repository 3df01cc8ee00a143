from django.urls import re_path

from disputes import api

urlpatterns = [
    re_path(
        r"^orders/(?P<order_id>[^/]+)/resolution/dispute/?$",
        api.OrderDisputeOpenView.as_view(),
        name="order-dispute",
    ),
    re_path(r"^disputes/?$", api.DisputeListView.as_view(), name="disputes"),
    re_path(r"^disputes/(?P<dispute_id>[^/]+)/?$", api.DisputeDetailView.as_view(), name="dispute"),
    re_path(r"^disputes/(?P<dispute_id>[^/]+)/assign/?$", api.DisputeAssignView.as_view(), name="dispute-assign"),
    re_path(r"^disputes/(?P<dispute_id>[^/]+)/resolve/?$", api.DisputeResolveView.as_view(), name="dispute-resolve"),
    re_path(r"^disputes/(?P<dispute_id>[^/]+)/reassign/?$", api.DisputeReassignView.as_view(), name="dispute-reassign"),
    re_path(r"^disputes/(?P<dispute_id>[^/]+)/withdraw/?$", api.DisputeWithdrawView.as_view(), name="dispute-withdraw"),
    re_path(r"^disputes/(?P<dispute_id>[^/]+)/evidence/?$", api.DisputeEvidenceView.as_view(), name="dispute-evidence"),
    re_path(
        r"^disputes/(?P<dispute_id>[^/]+)/evidence/(?P<evidence_id>[^/]+)/file/?$",
        api.DisputeEvidenceFileView.as_view(),
        name="api-dispute-evidence-file",  # the web page's view is "dispute-evidence-file"
    ),
    re_path(r"^disputes/(?P<dispute_id>[^/]+)/messages/?$", api.DisputeMessagesView.as_view(), name="dispute-messages"),
]
