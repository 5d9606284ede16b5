"""URLs of the Manage Nodes screens, Jenkins' paths: served at /computer/ and /manage/computer/."""

from django.urls import path

from nodes import views

app_name = "nodes"

urlpatterns = [
    path("", views.node_list, name="list"),
    path("new", views.new_node, name="new"),
    path("createItem", views.create_item, name="create-item"),
    path("doCreateItem", views.do_create_item, name="do-create-item"),
    path("configure", views.configure_monitors, name="configure-monitors"),
    path("updateNow", views.update_now, name="update-now"),
    path("sshCredentials", views.ssh_credentials, name="ssh-credentials"),
    path("<str:name>/", views.node_detail, name="detail"),
    path("<str:name>/state", views.node_state, name="state"),
    path("<str:name>/launchSlaveAgent", views.launch_agent, name="launch"),
    path("<str:name>/cancelLaunch", views.cancel_launch, name="cancel-launch"),
    path("<str:name>/disconnect", views.disconnect_form, name="disconnect"),
    path("<str:name>/doDisconnect", views.do_disconnect, name="do-disconnect"),
    path("<str:name>/markOffline", views.mark_offline_form, name="mark-offline"),
    path("<str:name>/toggleOffline", views.toggle_offline, name="toggle-offline"),
    path("<str:name>/setOfflineCause", views.set_offline_cause, name="set-offline-cause"),
    path("<str:name>/changeOfflineCause", views.change_offline_cause, name="change-offline-cause"),
    path("<str:name>/configure", views.configure, name="configure"),
    path("<str:name>/configSubmit", views.configure, name="config-submit"),
    path("<str:name>/delete", views.delete_confirm, name="delete"),
    path("<str:name>/doDelete", views.do_delete, name="do-delete"),
    path("<str:name>/log", views.node_log, name="log"),
    path("<str:name>/logText", views.node_log_text, name="log-text"),
    path("<str:name>/systemInfo", views.system_info, name="system-info"),
    path("<str:name>/builds", views.build_history, name="builds"),
    path("<str:name>/trustHostKey", views.trust_host_key, name="trust-host-key"),
]
