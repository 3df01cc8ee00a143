from django.urls import re_path

from marketplace import api

urlpatterns = [
    re_path(r"^users/?$", api.UserListCreateView.as_view(), name="users"),
    re_path(r"^users/(?P<user_id>[^/]+)/?$", api.UserDetailView.as_view(), name="user"),
]
