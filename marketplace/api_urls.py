from django.urls import re_path

from marketplace import api, orders_api

ORDER = r"orders/(?P<order_id>[^/]+)"
MILESTONE = rf"{ORDER}/milestones/(?P<ref>[^/]+)"

urlpatterns = [
    re_path(r"^users/?$", api.UserListCreateView.as_view(), name="users"),
    re_path(r"^users/(?P<user_id>[^/]+)/?$", api.UserDetailView.as_view(), name="user"),
    re_path(r"^users/(?P<user_id>[^/]+)/airtm/link/?$", api.UserAirtmLinkView.as_view(), name="user-airtm-link"),
    re_path(r"^orders/?$", orders_api.OrderListCreateView.as_view(), name="orders"),
    re_path(rf"^{ORDER}/?$", orders_api.OrderDetailView.as_view(), name="order"),
    re_path(rf"^{ORDER}/reserve/?$", orders_api.OrderReserveView.as_view(), name="order-reserve"),
    re_path(rf"^{ORDER}/cancel/?$", orders_api.OrderCancelView.as_view(), name="order-cancel"),
    re_path(rf"^{ORDER}/escrow/?$", orders_api.OrderEscrowView.as_view(), name="order-escrow"),
    re_path(rf"^{ORDER}/escrow/fund/?$", orders_api.OrderEscrowFundView.as_view(), name="order-escrow-fund"),
    re_path(rf"^{ORDER}/milestones/?$", orders_api.OrderMilestonesView.as_view(), name="order-milestones"),
    re_path(rf"^{MILESTONE}/complete/?$", orders_api.OrderMilestoneCompleteView.as_view(), name="milestone-complete"),
    re_path(rf"^{MILESTONE}/release/?$", orders_api.OrderMilestoneReleaseView.as_view(), name="milestone-release"),
    re_path(rf"^{ORDER}/resolution/release/?$", orders_api.OrderResolutionReleaseView.as_view(), name="order-release"),
    re_path(rf"^{ORDER}/resolution/refund/?$", orders_api.OrderResolutionRefundView.as_view(), name="order-refund"),
]
