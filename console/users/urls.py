"""Users under Manage Steward (/manage/users/) and the signed-in user's own page (/me/account/)."""

from django.urls import path

from console.users import views

urlpatterns = [
    path("me/account/", views.account, name="account"),
    path("manage/users/", views.user_list, name="users"),
    path("manage/users/new", views.user_create, name="user-create"),
    path("manage/users/<str:username>/", views.user_edit, name="user-edit"),
    path("manage/users/<str:username>/password", views.user_reset_password, name="user-password"),
    path("manage/users/<str:username>/delete", views.user_delete, name="user-delete"),
]
