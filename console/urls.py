"""Top-level URLs. Jenkins' paths where Jenkins has one (/manage/, /computer/, /job/...)."""

from django.contrib import admin
from django.urls import include, path

from console import views
from nodes import views as nodes_views

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
    path("computer/", include(("nodes.urls", "nodes"))),
    path("manage/computer/", include(("nodes.urls", "nodes"), namespace="manage-nodes")),
    path("jnlpJars/agent.pyz", nodes_views.agent_pyz, name="agent-pyz"),
    path("", include(("builds.urls", "builds"))),
    path("", include(("builds.widget_urls", "widgets"))),
    path("", include("console.users.urls")),
    path("admin/", admin.site.urls),
]

handler403 = "console.views.permission_denied"
handler404 = "console.views.page_not_found"
handler500 = "console.views.server_error"
