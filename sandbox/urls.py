from django.urls import path

from sandbox import views

app_name = "sandbox"

urlpatterns = [
    path("horizon/", views.horizon_root, name="horizon-root"),
    path("trustless-work/", views.trustless_work_root, name="trustless-work-root"),
    path("airtm/v2/", views.airtm_root, name="airtm-root"),
]
