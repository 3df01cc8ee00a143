import re

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.urls import path, re_path
from django.views.static import serve

from marketplace import order_views, review_views, views
from marketplace.forms import LoginForm

urlpatterns = [
    path("", views.home, name="home"),
    path("listings/", views.listing_browse, name="listing-browse"),
    path("listings/new/", views.listing_new, name="listing-create"),
    path("listings/mine/", views.my_listings, name="my-listings"),
    path("listings/<str:public_id>/", views.listing_detail, name="listing-detail"),
    path("listings/<str:public_id>/edit/", views.listing_edit, name="listing-edit"),
    path("listings/<str:public_id>/pause/", views.listing_pause_view, name="listing-pause"),
    path("listings/<str:public_id>/resume/", views.listing_resume_view, name="listing-resume"),
    path("listings/<str:public_id>/delete/", views.listing_delete_view, name="listing-delete"),
    path("listings/<str:public_id>/checkout/", order_views.checkout, name="checkout"),
    path("orders/purchases/", order_views.my_purchases, name="my-purchases"),
    path("orders/sales/", order_views.my_sales, name="my-sales"),
    path("orders/<str:public_id>/", order_views.order_detail, name="order-detail"),
    path("orders/<str:public_id>/live/", order_views.order_live, name="order-live"),
    path("orders/<str:public_id>/deliver/", order_views.order_deliver, name="order-deliver"),
    path("orders/<str:public_id>/release/", order_views.order_release_view, name="order-release"),
    path("orders/<str:public_id>/refund/", order_views.order_refund_view, name="order-refund"),
    path("orders/<str:public_id>/cancel/", order_views.order_cancel_view, name="order-cancel"),
    path("orders/<str:public_id>/retry/", order_views.order_retry_view, name="order-retry"),
    path("orders/<str:public_id>/milestones/<path:ref>/evidence/", order_views.order_evidence, name="order-evidence"),
    path("orders/<str:public_id>/review/", review_views.review_create_view, name="order-review"),
    path("orders/<str:public_id>/review/reply/", review_views.review_reply_view, name="order-review-reply"),
    path("sellers/<slug:handle>/", review_views.seller_profile, name="seller-profile"),
    path("accounts/profile/", review_views.account_profile, name="account-profile"),
    path("orders/<str:public_id>/delivery/file/", order_views.order_delivery_file_view, name="order-delivery-file"),
    path("accounts/signup/", views.sign_up, name="signup"),
    path("wallet/airtm/link/", views.airtm_link, name="airtm-link"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True, authentication_form=LoginForm),
        name="login",
    ),
    path("accounts/logout/", views.log_out, name="logout"),
    path("accounts/password-reset/", auth_views.PasswordResetView.as_view(), name="password_reset"),
    path("accounts/password-reset/sent/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "accounts/reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path("accounts/reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
]


def _media(request, path):
    # MEDIA_ROOT is read on each request, not once at import: the tests give each test its own.
    return serve(request, path, document_root=settings.MEDIA_ROOT)


# Uploaded listing images and avatars in development (`make run`); in production the TLS proxy
# serves MEDIA_ROOT at MEDIA_URL (as django.conf.urls.static.static(), nothing when DEBUG is off).
if settings.DEBUG and settings.MEDIA_URL.startswith("/"):
    urlpatterns += [re_path(rf"^{re.escape(settings.MEDIA_URL.lstrip('/'))}(?P<path>.*)$", _media)]
