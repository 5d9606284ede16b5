from django.conf import settings


def steward(request):
    return {
        "steward_version": settings.STEWARD_VERSION,
        "steward_scaled": settings.STEWARD_SCALED,
    }
