"""URLs of the jobs and builds screens, Jenkins' paths (included at the top level)."""

from django.urls import path, register_converter

from builds import views

app_name = "builds"


class PermalinkConverter:
    """``lastBuild``, ``lastSuccessfulBuild``, … (Jenkins' built-in permalinks)."""

    regex = "|".join(views.PERMALINKS)

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(PermalinkConverter, "permalink")

job = "job/<str:name>/"
build = job + "<int:number>/"

urlpatterns = [
    path("newJob", views.new_job, name="new-job"),
    path("createItem", views.new_job, name="create-item"),
    path("checkJobName", views.check_job_name, name="check-job-name"),
    path(
        "descriptorByName/hudson.model.FreeStyleProject/checkLabel",
        views.check_label,
        name="check-label",
    ),
    path("queue/item/<int:item_id>/", views.queue_item, name="queue-item"),
    path("queue/item/<int:item_id>/api/json", views.queue_item_api, name="queue-item-api"),
    path(job, views.job_detail, name="job"),
    path(job + "api/json", views.job_api, name="job-api"),
    path(job + "configure", views.configure, name="configure"),
    path(job + "configSubmit", views.configure, name="config-submit"),
    path(job + "build", views.build_now, name="build-now"),
    path(job + "confirm-rename", views.rename, name="rename"),
    path(job + "confirmRename", views.rename, name="confirm-rename"),
    path(job + "delete", views.delete_job, name="delete"),
    path(job + "doDelete", views.delete_job, name="do-delete"),
    path(job + "enable", views.set_enabled, {"enable": True}, name="enable"),
    path(job + "disable", views.set_enabled, {"enable": False}, name="disable"),
    path(job + "<permalink:link>/", views.permalink, name="permalink"),
    path(job + "<permalink:link>/<path:rest>", views.permalink, name="permalink-path"),
    path(build, views.build_detail, name="build"),
    path(build + "api/json", views.build_api, name="build-api"),
    path(build + "stop", views.stop_build, name="stop"),
    path(build + "console", views.console, name="console"),
    path(build + "consoleFull", views.console_full, name="console-full"),
    path(build + "consoleText", views.console_text, name="console-text"),
    path(build + "logText/progressiveText", views.progressive_text, name="progressive-text"),
]
