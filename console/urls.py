"""Top-level URLs. Jenkins' paths where Jenkins has one (/manage/, /computer/, /job/...)."""

from django.contrib import admin
from django.urls import include, path

from console import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("health", views.health, name="health"),
    path("login", views.SignInView.as_view(), name="login"),
    path("logout", views.sign_out, name="logout"),
    path("manage/", views.manage, name="manage"),
    path("manage/systemInfo", views.system_info, name="system-info"),
    path("manage/runtimeCheck", views.runtime_check_start, name="runtime-check-start"),
    path("manage/runtimeCheck/<int:check_id>/", views.runtime_check, name="runtime-check"),
    path("manage/credentials/", include("credentials.urls")),
    path("", include("console.users.urls")),
    path("admin/", admin.site.urls),
]

handler403 = "console.views.permission_denied"
handler404 = "console.views.page_not_found"
handler500 = "console.views.server_error"
