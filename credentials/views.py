"""Manage Credentials pages (Jenkins' screens and words). Views parse, call services, render.

Administrators manage; Operators and Viewers see lists and details, never a secret, and get
403 for any change. Views that receive secrets are marked sensitive so error reports scrub them.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables

from console.permissions import can
from credentials import crypto, services
from credentials.domains import SPEC_TYPES, describe_specification
from credentials.forms import DomainForm, MoveForm
from credentials.kinds import all_kinds, get_kind
from credentials.models import SYSTEM_STORE, Credential, Domain, GlobalDomain

VIEW = "credentials.view_credential"
STORE_NAMES = {SYSTEM_STORE: "System"}


def _require(request: HttpRequest, perm: str) -> None:
    if not can(request.user, perm):
        raise PermissionDenied


def _store_or_404(store: str) -> str:
    if store not in STORE_NAMES:
        raise Http404("No such credentials store")
    return store


def _domain_or_404(store: str, url_name: str) -> Domain | GlobalDomain:
    try:
        return services.get_domain(_store_or_404(store), url_name)
    except Domain.DoesNotExist:
        raise Http404("No such credentials domain") from None


def _credential_or_404(
    store: str, url_name: str, credential_id: str
) -> tuple[Domain | GlobalDomain, Credential]:
    domain = _domain_or_404(store, url_name)
    qs = services.credentials_in(domain, store).select_related("domain")
    return domain, get_object_or_404(qs, credential_id=credential_id)


def _abilities(user) -> dict[str, bool]:
    return {
        "can_add_credential": can(user, "credentials.add_credential"),
        "can_change_credential": can(user, "credentials.change_credential"),
        "can_delete_credential": can(user, "credentials.delete_credential"),
        "can_add_domain": can(user, "credentials.add_domain"),
        "can_change_domain": can(user, "credentials.change_domain"),
        "can_delete_domain": can(user, "credentials.delete_domain"),
    }


def _context(request: HttpRequest, store: str = SYSTEM_STORE, **extra) -> dict:
    return {"store": store, "store_name": STORE_NAMES[store], **_abilities(request.user), **extra}


def _specs(domain) -> list[tuple[str, list[tuple[str, str]]]]:
    return [
        (SPEC_TYPES.get(s.get("type"), s.get("type")), describe_specification(s))
        for s in domain.specifications
    ]


# --- lists --------------------------------------------------------------------------------


def index(request: HttpRequest) -> HttpResponse:
    """/manage/credentials/: every credential, then "Stores scoped to Steward"."""
    _require(request, VIEW)
    credentials = Credential.objects.select_related("domain").order_by(
        "domain__name", "credential_id"
    )
    return render(
        request,
        "credentials/index.html",
        _context(
            request,
            on_index=True,
            credentials=credentials,
            domains=services.domains_of(SYSTEM_STORE),
        ),
    )


def store(request: HttpRequest, store: str) -> HttpResponse:
    """The System store: its domains."""
    _require(request, VIEW)
    _store_or_404(store)
    counts = dict(
        Credential.objects.filter(store=store)
        .values_list("domain")
        .annotate(n=Count("pk"))
        .values_list("domain", "n")
    )
    rows = [(d, counts.get(d.pk, 0)) for d in services.domains_of(store)]
    return render(request, "credentials/store.html", _context(request, store, rows=rows))


def domain(request: HttpRequest, store: str, domain: str) -> HttpResponse:
    _require(request, VIEW)
    the_domain = _domain_or_404(store, domain)
    credentials = services.credentials_in(the_domain, store).select_related("domain")
    return render(
        request,
        "credentials/domain.html",
        _context(
            request,
            store,
            domain=the_domain,
            credentials=credentials,
            specs=_specs(the_domain),
        ),
    )


# --- credentials --------------------------------------------------------------------------


@sensitive_post_parameters()
@sensitive_variables()
def new_credentials(request: HttpRequest, store: str, domain: str) -> HttpResponse:
    """Add Credentials: choose the kind, then fill in its form."""
    _require(request, "credentials.add_credential")
    the_domain = _domain_or_404(store, domain)
    kind_key = request.POST.get("kind") or request.GET.get("kind")
    kinds = {k.key: k for k in all_kinds()}
    if kind_key not in kinds:
        return render(
            request,
            "credentials/choose_kind.html",
            _context(
                request,
                store,
                domain=the_domain,
                kinds=kinds.values(),
            ),
        )
    kind = kinds[kind_key]
    form = kind.form_class(request.POST or None, request.FILES or None, store=store)
    key_error = None
    if request.method == "POST" and form.is_valid():
        try:
            credential = services.create_credential(
                form.to_input(), domain=the_domain, store=store, actor=request.user
            )
        except services.DuplicateCredentialId:
            form.add_error("credential_id", "This ID is already in use")
        except crypto.MasterKeyError as exc:
            key_error = str(exc)
        else:
            messages.success(request, "Credentials created")
            return redirect(credential)
    return render(
        request,
        "credentials/credential_form.html",
        _context(
            request,
            store,
            domain=the_domain,
            kind=kind,
            form=form,
            creating=True,
            key_error=key_error,
            secrets_not_returned=form.is_bound and form.errors and form.secret_posted(),
        ),
    )


def credential(request: HttpRequest, store: str, domain: str, credential_id: str) -> HttpResponse:
    _require(request, VIEW)
    the_domain, cred = _credential_or_404(store, domain, credential_id)
    return render(
        request,
        "credentials/credential.html",
        _context(
            request,
            store,
            domain=the_domain,
            credential=cred,
            kind=cred.kind_class,
            usages=list(cred.usages.all()),
            warnings=cred.kind_class.warnings(cred),
        ),
    )


@sensitive_post_parameters()
@sensitive_variables()
def update_credential(
    request: HttpRequest, store: str, domain: str, credential_id: str
) -> HttpResponse:
    _require(request, "credentials.change_credential")
    the_domain, cred = _credential_or_404(store, domain, credential_id)
    kind = get_kind(cred.kind)
    try:
        stored = services.secret_values(cred)
    except (crypto.DecryptionError, crypto.MasterKeyError) as exc:
        return render(
            request,
            "credentials/unavailable.html",
            _context(
                request,
                store,
                domain=the_domain,
                credential=cred,
                problem=str(exc),
            ),
            status=500,
        )
    form = kind.form_class(
        request.POST or None, request.FILES or None, instance=cred, stored_secrets=stored
    )
    key_error = None
    if request.method == "POST" and form.is_valid():
        try:
            services.update_credential(cred, form.to_input(), actor=request.user)
        except crypto.MasterKeyError as exc:
            key_error = str(exc)
        else:
            messages.success(request, "Credentials updated")
            return redirect(cred)
    return render(
        request,
        "credentials/credential_form.html",
        _context(
            request,
            store,
            domain=the_domain,
            kind=kind,
            form=form,
            credential=cred,
            creating=False,
            key_error=key_error,
            secrets_not_returned=form.is_bound and form.errors and form.secret_posted(),
        ),
    )


def delete_credential(
    request: HttpRequest, store: str, domain: str, credential_id: str
) -> HttpResponse:
    _require(request, "credentials.delete_credential")
    the_domain, cred = _credential_or_404(store, domain, credential_id)
    if request.method == "POST":
        services.delete_credential(cred, actor=request.user)
        messages.success(request, f"Deleted {cred.credential_id}")
        return redirect(the_domain.get_absolute_url())
    return render(
        request,
        "credentials/credential_delete.html",
        _context(
            request,
            store,
            domain=the_domain,
            credential=cred,
        ),
    )


def move_credential(
    request: HttpRequest, store: str, domain: str, credential_id: str
) -> HttpResponse:
    _require(request, "credentials.change_credential")
    the_domain, cred = _credential_or_404(store, domain, credential_id)
    form = MoveForm(request.POST or None, credential=cred)
    if request.method == "POST" and form.is_valid():
        destination = _domain_or_404(store, form.cleaned_data["destination"])
        services.move_credential(cred, destination, actor=request.user)
        messages.success(request, f"Moved to {destination.name}")
        return redirect(cred)
    return render(
        request,
        "credentials/credential_move.html",
        _context(
            request,
            store,
            domain=the_domain,
            credential=cred,
            form=form,
        ),
    )


# --- domains ------------------------------------------------------------------------------


def new_domain(request: HttpRequest, store: str) -> HttpResponse:
    _require(request, "credentials.add_domain")
    _store_or_404(store)
    form = DomainForm(request.POST or None, store=store)
    if request.method == "POST" and form.is_valid():
        created = services.create_domain(
            name=form.cleaned_data["name"],
            description=form.cleaned_data["description"],
            specifications=form.specifications(),
            store=store,
            actor=request.user,
        )
        return redirect(created)
    return render(
        request, "credentials/domain_form.html", _context(request, store, form=form, creating=True)
    )


def configure_domain(request: HttpRequest, store: str, domain: str) -> HttpResponse:
    _require(request, "credentials.change_domain")
    the_domain = _domain_or_404(store, domain)
    if isinstance(the_domain, GlobalDomain):
        raise Http404("The Global domain cannot be configured")
    form = DomainForm(request.POST or None, instance=the_domain)
    if request.method == "POST" and form.is_valid():
        services.update_domain(
            the_domain,
            name=form.cleaned_data["name"],
            description=form.cleaned_data["description"],
            specifications=form.specifications(),
            actor=request.user,
        )
        return redirect(the_domain)
    return render(
        request,
        "credentials/domain_form.html",
        _context(
            request,
            store,
            form=form,
            domain=the_domain,
            creating=False,
        ),
    )


def delete_domain(request: HttpRequest, store: str, domain: str) -> HttpResponse:
    _require(request, "credentials.delete_domain")
    the_domain = _domain_or_404(store, domain)
    if isinstance(the_domain, GlobalDomain):
        raise Http404("The Global domain cannot be deleted")
    if request.method == "POST":
        services.delete_domain(the_domain, actor=request.user)
        return redirect("credentials:store", store=store)
    return render(
        request,
        "credentials/domain_delete.html",
        _context(
            request,
            store,
            domain=the_domain,
            count=the_domain.credentials.count(),
        ),
    )
