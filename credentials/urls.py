"""Credentials URLs, shaped like Jenkins' (/manage/credentials/store/system/domain/_/...)."""

from django.urls import path

from credentials import views

app_name = "credentials"

STORE = "store/<str:store>/"
DOMAIN = STORE + "domain/<str:domain>/"
CREDENTIAL = DOMAIN + "credential/<str:credential_id>/"

urlpatterns = [
    path("", views.index, name="index"),
    path(STORE, views.store, name="store"),
    path(STORE + "newDomain", views.new_domain, name="new-domain"),
    path(DOMAIN, views.domain, name="domain"),
    path(DOMAIN + "configure", views.configure_domain, name="configure-domain"),
    path(DOMAIN + "delete", views.delete_domain, name="delete-domain"),
    path(DOMAIN + "newCredentials", views.new_credentials, name="new-credentials"),
    path(CREDENTIAL, views.credential, name="credential"),
    path(CREDENTIAL + "update", views.update_credential, name="update-credential"),
    path(CREDENTIAL + "delete", views.delete_credential, name="delete-credential"),
    path(CREDENTIAL + "move", views.move_credential, name="move-credential"),
]
