"""Secret file: an uploaded file kept encrypted, with its file name."""

from __future__ import annotations

import os

from django.template.defaultfilters import filesizeformat
from django.views.decorators.debug import sensitive_variables

from credentials.forms import KEEP, MAX_SECRET_FILE_BYTES, CredentialForm, SecretField
from credentials.kinds import register
from credentials.kinds.base import CredentialKind, _with_description


def clean_file_name(name: str) -> str:
    """The base name only (browsers may send a path); no control characters."""
    base = os.path.basename(name.replace("\\", "/")).strip()
    return "".join(c for c in base if c.isprintable())[:255] or "secret-file"


class SecretFileForm(CredentialForm):
    kind_key = "file"
    secret_field_names = ("file",)

    file = SecretField(
        label="File",
        mode="file",
        max_bytes=MAX_SECRET_FILE_BYTES,
        help_text=f"The file is kept encrypted; at most {filesizeformat(MAX_SECRET_FILE_BYTES)}.",
    )

    def stored_note(self, name: str) -> str:
        details = self.instance.details if self.instance else {}
        return f"{details.get('filename', '')} ({filesizeformat(details.get('size', 0))})"

    @sensitive_variables()
    def kind_values(self):
        upload = self.cleaned_data.get("file")
        if upload is KEEP:
            details = {k: self.instance.details.get(k) for k in ("filename", "size")}
            return "", False, details, {"file": self._stored["file"]}
        content = b"".join(upload.chunks())
        details = {"filename": clean_file_name(upload.name or ""), "size": len(content)}
        return "", False, details, {"file": content}


@register
class SecretFile(CredentialKind):
    key = "file"
    display_name = "Secret file"
    description = "A file whose contents are secret, such as a kubeconfig or a license file."
    jenkins_class = "org.jenkinsci.plugins.plaincredentials.impl.FileCredentialsImpl"
    icon = "file"
    order = 40
    form_class = SecretFileForm
    secret_fields = ("file",)
    binary_fields = frozenset({"file"})
    detail_template = "credentials/kinds/file.html"

    @classmethod
    def name_of(cls, credential) -> str:
        return _with_description(credential.details.get("filename", "secret file"), credential)
