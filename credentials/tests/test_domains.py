"""Domain specifications and Jenkins' matching rules; the domain form."""

from __future__ import annotations

import pytest

from credentials.domains import (
    Requirement,
    Result,
    ant_match,
    match_domain,
    match_specification,
    wildcard_match,
)
from credentials.forms import DomainForm
from credentials.tests.factories import make_domain


@pytest.mark.parametrize(
    ("value", "pattern", "expected"),
    [
        ("build1.example.com", "*.example.com", True),
        ("BUILD1.Example.COM", "*.example.com", True),  # case-insensitive
        ("example.com", "*.example.com", False),
        ("build1.example.com", "build?.example.com", True),
        ("build12.example.com", "build?.example.com", False),
        ("a+b.example.com", "a+b.example.com", True),  # regex characters are literal
        ("axb.example.com", "a.b.example.com", False),
    ],
)
def test_wildcards(value, pattern, expected):
    assert wildcard_match(value, pattern) is expected


@pytest.mark.parametrize(
    ("path", "pattern", "expected"),
    [
        ("/repos/app.git", "/repos/**", True),
        ("/repos/team/app.git", "/repos/**", True),
        ("/repos/team/app.git", "/repos/*", False),
        ("/repos/app.git", "/repos/*.git", True),
        ("/a/x/b", "/a/*/b", True),
        ("/a/x/y/b", "/a/**/b", True),
        ("/a/b", "/a/**/b", True),
        ("/Repos/app", "/repos/*", False),
    ],
)
def test_ant_paths(path, pattern, expected):
    assert ant_match(path, pattern) is expected


def test_ant_paths_case_insensitive():
    assert ant_match("/Repos/App", "/repos/*", case_sensitive=False)


HOSTNAME = {
    "type": "hostname",
    "includes": "*.example.com, build.local",
    "excludes": "secret.example.com",
}


@pytest.mark.parametrize(
    ("host", "result"),
    [
        ("ci.example.com", Result.PARTIAL),
        ("build.local", Result.PARTIAL),
        ("secret.example.com", Result.NEGATIVE),
        ("other.org", Result.NEGATIVE),
    ],
)
def test_hostname_specification(host, result):
    assert match_specification(HOSTNAME, "hostname", host).result is result


def test_includes_split_on_commas_spaces_and_newlines():
    spec = {
        "type": "hostname",
        "includes": "a.example.com\nb.example.com c.example.com,d.example.com",
    }
    for host in "abcd":
        assert match_specification(spec, "hostname", f"{host}.example.com").result is Result.PARTIAL


def test_empty_includes_mean_any_host():
    spec = {"type": "hostname", "includes": "", "excludes": "*.internal"}
    assert match_specification(spec, "hostname", "anything.org").result is Result.PARTIAL
    assert match_specification(spec, "hostname", "db.internal").result is Result.NEGATIVE


def test_hostname_port_specification_and_default_any_port():
    spec = {
        "type": "hostname_port",
        "includes": "build*.example.com:22, ci.example.com",
        "excludes": "",
    }
    assert (
        match_specification(spec, "hostname_port", "build7.example.com:22").result is Result.PARTIAL
    )
    assert (
        match_specification(spec, "hostname_port", "build7.example.com:2222").result
        is Result.NEGATIVE
    )
    assert (
        match_specification(spec, "hostname_port", "ci.example.com:8022").result is Result.PARTIAL
    )
    # It says nothing about a requirement without a port.
    assert match_specification(spec, "hostname", "build7.example.com").result is Result.UNKNOWN


def test_scheme_specification():
    spec = {"type": "scheme", "schemes": "ssh, https"}
    assert match_specification(spec, "scheme", "ssh").result is Result.PARTIAL
    assert match_specification(spec, "scheme", "http").result is Result.NEGATIVE
    assert match_specification(spec, "hostname", "x").result is Result.UNKNOWN


def test_path_specification():
    spec = {
        "type": "path",
        "includes": "/repos/**",
        "excludes": "/repos/private/**",
        "case_sensitive": True,
    }
    assert match_specification(spec, "path", "/repos/app.git").result is Result.PARTIAL
    assert match_specification(spec, "path", "/repos/private/x").result is Result.NEGATIVE
    assert match_specification(spec, "path", "/other").result is Result.NEGATIVE


def test_domain_without_specifications_matches_everything():
    assert match_domain([], Requirement("any.host", 22, "ssh")).result.match


def test_domain_matching_follows_the_first_definitive_answer():
    specs = [HOSTNAME, {"type": "scheme", "schemes": "ssh"}]
    assert match_domain(specs, Requirement("ci.example.com", 22, "ssh")).result.match
    wrong_scheme = match_domain(specs, Requirement("ci.example.com", 22, "https"))
    assert not wrong_scheme.result.match
    assert "URI scheme https is not one of ssh" in wrong_scheme.reason
    wrong_host = match_domain(specs, Requirement("db.other.org", 22, "ssh"))
    assert not wrong_host.result.match
    assert "db.other.org is not in its Hostname includes" in wrong_host.reason
    # A requirement the specifications say nothing about does not exclude the domain.
    assert match_domain(specs, Requirement(path="/x")).result.match


def test_hostname_spec_also_applies_to_host_and_port_requirements():
    specs = [
        {"type": "hostname", "includes": "*.example.com", "excludes": ""},
        {"type": "hostname_port", "includes": "*:22", "excludes": ""},
    ]
    assert match_domain(specs, Requirement("a.example.com", 22)).result.match
    verdict = match_domain(specs, Requirement("a.example.com", 2222))
    assert not verdict.result.match and "Hostname:port" in verdict.reason


# --- the domain form ----------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("", "You must provide a name for the domain"),
        ("   ", "You must provide a name for the domain"),
        ("Production", "A domain with that name already exists"),
        ("_", "Unacceptable characters"),
        ("a/b", "Unacceptable characters"),
    ],
)
def test_domain_form_name_errors(name, error):
    make_domain("Production")
    form = DomainForm({"name": name})
    assert not form.is_valid()
    assert form.errors["name"] == [error]


@pytest.mark.django_db
def test_domain_form_builds_specifications_and_round_trips():
    form = DomainForm(
        {
            "name": "Build farm",
            "hostname_includes": "*.farm.example.com",
            "hostname_excludes": "",
            "schemes": "SSH, https",
            "path_includes": "/repos/**",
            "path_case_sensitive": "",
        }
    )
    assert form.is_valid(), form.errors
    specs = form.specifications()
    assert specs == [
        {"type": "hostname", "includes": "*.farm.example.com", "excludes": ""},
        {"type": "scheme", "schemes": "ssh, https"},
        {"type": "path", "includes": "/repos/**", "excludes": "", "case_sensitive": False},
    ]
    domain = make_domain("Build farm", specs)
    again = DomainForm(instance=domain)
    assert again["hostname_includes"].value() == "*.farm.example.com"
    assert again["schemes"].value() == "ssh, https"
    assert again["path_case_sensitive"].value() is False
    # Renaming to its own name is not a duplicate.
    assert DomainForm({"name": "Build farm"}, instance=domain).is_valid()


@pytest.mark.django_db
def test_domain_form_rejects_bad_schemes():
    form = DomainForm({"name": "x", "schemes": "ssh, not a scheme!"})
    assert not form.is_valid()
    assert "is not a URI scheme" in form.errors["schemes"][0]
