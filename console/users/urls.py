from django.urls import path
from django.views.generic import TemplateView

urlpatterns = [
    path("me/account/", TemplateView.as_view(template_name="console/dashboard.html"), name="account"),
]
