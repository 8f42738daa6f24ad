"""Config parsing and validation: every problem, with its line, in a plain sentence."""

from __future__ import annotations

import re
import threading
import time
import tracemalloc
import typing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import annotated_types
import pytest
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from hammersmith import config
from hammersmith.errors import ConfigError
from tests.conftest import hammersmith

GOOD = """\
state_dir: state
sites:
  uc:
    cloud: chi-uc
    policy:
      stuck_after_minutes: 90
      hammers:
        error-resetter: apply
  tacc:
    cloud: chi-tacc
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc_info:
        config.parse(text, "site.yaml")
    return [str(p) for p in exc_info.value.problems]


def test_parse_good_config() -> None:
    settings = config.parse(GOOD)
    assert set(settings.sites) == {"uc", "tacc"}
    assert settings.sites["uc"].policy.stuck_after_minutes == 90
    assert settings.sites["uc"].policy.hammers == {"error-resetter": "apply"}
    assert settings.sites["tacc"].page_size == 1000


def test_broken_yaml_names_the_line() -> None:
    assert problems("sites:\n  uc:\n    cloud: [chi-uc\n") == [
        "site.yaml:4: not valid YAML: expected ',' or ']', but got '<stream end>'"
    ]


def test_unknown_key_names_its_line() -> None:
    text = GOOD.replace("      stuck_after_minutes: 90", "      stuck_after_minutes: 90\n      stuck_afer: 3")
    assert problems(text) == [
        "site.yaml:7: unknown key 'sites.uc.policy.stuck_afer' (check the spelling; docs/config.md lists every key)"
    ]


def test_wrong_type_names_its_line() -> None:
    found = problems(GOOD.replace("stuck_after_minutes: 90", "stuck_after_minutes: soon"))
    assert len(found) == 1
    assert found[0].startswith("site.yaml:6: 'sites.uc.policy.stuck_after_minutes': Input should be a valid integer")
    assert "'soon'" in found[0]


def test_every_problem_is_reported_in_line_order() -> None:
    text = GOOD.replace("cloud: chi-tacc", "cloud: 7\n    colour: blue").replace("apply", "sometimes")
    found = problems(text)
    assert [p.split(":")[1] for p in found] == ["8", "10", "11"]
    assert "Input should be 'off', 'observe' or 'apply'" in found[0]


def test_missing_sites_and_bad_site_name() -> None:
    assert problems("state_dir: x\n") == ["site.yaml:1: missing required key 'sites'"]
    assert "site name 'UC Site' must be lowercase" in problems("sites:\n  UC Site:\n    cloud: a\n")[0]


def test_not_a_mapping() -> None:
    assert problems("- a\n- b\n") == ["site.yaml:1: expected a mapping with at least a 'sites' key"]


def test_config_path_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert config.config_path() == Path("hammersmith.yaml")
    monkeypatch.setenv("HAMMERSMITH_CONFIG", "/etc/hs.yaml")
    assert config.config_path() == Path("/etc/hs.yaml")
    assert config.config_path("/x.yaml") == Path("/x.yaml")


def test_relative_state_dir_is_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "hs.yaml").write_text(GOOD)
    settings = config.load(tmp_path / "hs.yaml")
    assert settings.state_dir == tmp_path / "state"
    assert settings.effective_store_url == f"sqlite:///{tmp_path / 'state' / 'hammersmith.sqlite'}"


def test_cli_validate_reports_all_problems_exit_2(tmp_path: Path) -> None:
    (tmp_path / "hs.yaml").write_text("sites:\n  uc:\n    cloud: 5\n    timeout_seconds: -1\n    colour: x\n")
    result = hammersmith("--config", "hs.yaml", "config", "validate", cwd=tmp_path)
    assert result.returncode == 2
    assert "hs.yaml:4: 'sites.uc.timeout_seconds': Input should be greater than 0" in result.stderr
    assert "hs.yaml:5: unknown key 'sites.uc.colour'" in result.stderr
    assert "hs.yaml:3: 'sites.uc.cloud': Input should be a valid string" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_validate_missing_cloud_points_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "clouds.yaml").write_text("clouds:\n  chi-uc:\n    auth_type: none\n")
    (tmp_path / "hammersmith.yaml").write_text(GOOD)
    result = hammersmith("config", "validate", cwd=tmp_path)
    assert result.returncode == 2
    assert "hammersmith.yaml:10: site 'tacc': cloud 'chi-tacc' is not in clouds.yaml" in result.stderr
    assert "chi-uc" not in result.stderr.split("error:")[1].split("\n")[1]


def test_cli_missing_config_file(tmp_path: Path) -> None:
    result = hammersmith("snapshot", cwd=tmp_path)
    assert result.returncode == 2
    assert "hammersmith.yaml: file not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_validate_ok_json(tmp_path: Path) -> None:
    (tmp_path / "clouds.yaml").write_text("clouds:\n  chi-uc:\n    auth_type: none\n  chi-tacc:\n    auth_type: none\n")
    (tmp_path / "hammersmith.yaml").write_text(GOOD)
    result = hammersmith("config", "validate", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"valid": true' in result.stdout


def test_duplicate_site_is_an_error_not_a_silent_override() -> None:
    text = GOOD + "  uc:\n    cloud: chi-uc-2\n"
    assert problems(text) == ["site.yaml:11: duplicate key 'sites.uc' (first at line 3)"]


def test_bare_off_means_the_off_mode() -> None:
    settings = config.parse(GOOD.replace("error-resetter: apply", "error-resetter: off"))
    assert settings.sites["uc"].policy.hammers == {"error-resetter": "off"}


def test_state_dir_expands_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "hs.yaml").write_text(GOOD.replace("state_dir: state", "state_dir: ~/hs-state"))
    assert config.load(tmp_path / "hs.yaml").state_dir == tmp_path / "hs-state"


def test_unknown_hammer_lists_the_known_ones() -> None:
    (found,) = problems(GOOD.replace("error-resetter: apply", "error-resseter: apply"))
    assert found.startswith("site.yaml:7: 'sites.uc.policy.hammers': Value error, unknown hammer(s) error-resseter;")
    assert "known: clean-failed, conflicting-macs, dirty-ports, error-resetter, floating-ip-reaper," in found


def test_invalid_hammer_policy_is_line_precise() -> None:
    text = GOOD.replace(
        "      stuck_after_minutes: 90", "      stuck_after_minutes: 90\n      budget:\n        attempts: 0"
    )
    assert problems(text) == [
        "site.yaml:8: 'sites.uc.policy.budget.attempts': Input should be greater than or equal to 1 (got 0)"
    ]


def test_notify_urls_are_never_echoed() -> None:
    (found,) = problems(GOOD.replace("    cloud: chi-tacc", "    cloud: chi-tacc\n    notify: slack://T0/B0/s3cr3t"))
    assert "s3cr3t" not in found and "'sites.tacc.notify': Input should be a valid list" in found


def test_http_listen_is_host_and_port_with_its_line() -> None:
    assert config.parse(GOOD).http.listen == "127.0.0.1:9184"
    parsed = config.parse("http:\n  listen: '[::1]:0'\n" + GOOD.split("\n", 1)[1])
    assert (parsed.http.host, parsed.http.port) == ("::1", 0)
    assert problems("http:\n  listen: localhost\n" + GOOD.split("\n", 1)[1]) == [
        "site.yaml:2: 'http.listen': Value error, must be host:port, e.g. 127.0.0.1:9184 (port 0: any free port)"
        " (got 'localhost')"
    ]


def test_cli_exporter_refuses_a_bad_listen_address(tmp_path: Path) -> None:
    (tmp_path / "hammersmith.yaml").write_text(GOOD)
    result = hammersmith("exporter", "--listen", "nonsense", cwd=tmp_path)
    assert result.returncode == 2
    assert "must be host:port" in result.stderr


def test_webhook_token_is_never_echoed_and_alerts_name_real_hammers() -> None:
    text = "http:\n  webhook_token: tooshort\n" + GOOD.replace(
        "    cloud: chi-tacc\n", "    cloud: chi-tacc\n    alerts:\n      X: nope\n"
    )
    found = problems(text)
    assert found[0] == "site.yaml:2: 'http.webhook_token': String should have at least 16 characters"
    assert "tooshort" not in " ".join(found)
    assert found[1].startswith("site.yaml:13: 'sites.tacc.alerts': Value error, unknown hammer(s) nope; known:")


def billion_laughs(levels: int = 10, width: int = 10) -> str:
    """A valid config followed by the classic alias bomb: `width ** levels` strings from a few hundred bytes."""
    lines = ["l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]" for i in range(1, levels)]
    return GOOD + "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_in_bounded_time_and_memory() -> None:
    text = billion_laughs()
    assert len(text) < 1024  # 10 ** 10 strings once expanded: over 60 GB of Python objects
    tracemalloc.start()
    started = time.perf_counter()
    try:
        found = problems(text)
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(found) == 1
    assert re.fullmatch(
        r"site\.yaml:1[1-9]: more than 100,000 values once aliases are expanded \(an alias bomb\?\)", found[0]
    )
    assert seconds < 5 and peak < 64 * 1024 * 1024, (seconds, peak)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a: &a [*a]\n", 11),
        ("a: &a\n  b: *a\n", 11),
        ("a: &a\n  b:\n    - c: [*a]\n", 11),
        ("a: &a\n  <<: *a\n", 11),
        ("a: &a\n  b: {<<: [*a]}\n", 11),
    ],
    ids=["list", "mapping", "nested", "merge", "merge-list"],
)
def test_self_referencing_alias_is_a_config_error(text: str, line: int) -> None:
    assert problems(GOOD + text) == [f"site.yaml:{line}: an alias inside this collection refers back to it (a cycle)"]


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("? [a, b]\n    : c", "a key must be a name, not a list"),
        ("? {a: 1}\n    : c", "a key must be a name, not a mapping"),
        ("[a]: c", "a key must be a name, not a list"),
        ("{a: 1}: c", "a key must be a name, not a mapping"),
        ("1: x", "key '1' is read as int, not a name: quote it"),
        ("on: x", "key 'on' is read as bool, not a name: quote it"),
        ("~: x", "key '~' is read as null, not a name: quote it"),
    ],
)
def test_a_key_that_is_not_a_name_is_a_config_error(key: str, message: str) -> None:
    assert problems(GOOD.replace("    cloud: chi-tacc\n", f"    cloud: chi-tacc\n    {key}\n")) == [
        f"site.yaml:11: {message}"
    ]


def test_a_name_written_as_a_number_is_refused_where_names_are_expected() -> None:
    assert problems(GOOD.replace("  tacc:", "  1:")) == ["site.yaml:9: key '1' is read as int, not a name: quote it"]
    text = GOOD.replace("        error-resetter: apply", "        {1: x}: apply")
    assert problems(text) == ["site.yaml:8: a key must be a name, not a mapping"]


def test_deep_nesting_is_refused_before_the_parser_recurses() -> None:
    assert problems(GOOD + "a: " + "[" * 100_000 + "]" * 100_000 + "\n") == [
        "site.yaml:11: nested deeper than 32 levels"
    ]
    chain = "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 100))
    assert problems(GOOD + "a0: &a0 [x]\n" + chain) == [
        "site.yaml:11: nested deeper than 32 levels once aliases are expanded"
    ]


def test_many_values_are_refused_early() -> None:
    started = time.perf_counter()
    found = problems(GOOD.replace("cloud: chi-tacc", "cloud: [" + ", ".join(["x"] * 300_000) + "]"))
    assert found == ["site.yaml:10: more than 100,000 values"]
    assert time.perf_counter() - started < 10


def test_anchors_aliases_and_merge_keys_keep_working() -> None:
    text = """\
sites:
  uc:
    cloud: chi-uc
    policy: &policy
      stuck_after_minutes: 90
      hammers: &modes
        error-resetter: apply
  tacc:
    cloud: chi-tacc
    policy: *policy
  tacc-2:
    cloud: chi-tacc
    policy:
      <<: *policy
      stuck_after_minutes: 30
      hammers: *modes
"""
    sites = config.parse(text).sites
    assert [s.policy.stuck_after_minutes for s in sites.values()] == [90, 90, 30]
    assert sites["tacc-2"].policy.hammers == {"error-resetter": "apply"}
    # a wrong value reached through an alias or a merge points at the line it is written on, for each site using it
    found = problems(text.replace("error-resetter: apply", "error-resetter: sometimes"))
    assert [p.split(": '")[0] + ": " + p.split("'")[1] for p in found] == [
        "site.yaml:7: sites.uc.policy.hammers.error-resetter",
        "site.yaml:7: sites.tacc.policy.hammers.error-resetter",
        "site.yaml:7: sites.tacc-2.policy.hammers.error-resetter",
    ]
    # overriding a merged key is the point of a merge; writing it twice is still a mistake
    assert problems(text.replace("      stuck_after_minutes: 30\n", "      stuck_after_minutes: 30\n" * 2)) == [
        "site.yaml:16: duplicate key 'sites.tacc-2.policy.stuck_after_minutes' (first at line 15)"
    ]


def test_a_value_yaml_cannot_read_is_pinned_to_its_line_and_not_echoed() -> None:
    assert problems(GOOD.replace("cloud: chi-tacc", "cloud: !!int s3cr3t-t0ken")) == [
        "site.yaml:10: cannot read this value as int"
    ]
    assert problems(GOOD.replace("cloud: chi-tacc", "cloud: " + "9" * 5000)) == [
        "site.yaml:10: cannot read this value as int"
    ]
    assert problems(GOOD.replace("cloud: chi-tacc", "cloud: !!python/object/apply:os.system [id]")) == [
        "site.yaml:10: not valid YAML: could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/object/apply:os.system'"
    ]
    assert problems(GOOD.replace("cloud: chi-tacc", "cloud: chi\x00tacc")) == [
        "site.yaml:10: not valid YAML: character #x0000: special characters are not allowed"
    ]


def test_load_refuses_a_file_over_1_mib_and_one_not_utf8(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(GOOD + "#" * 1_048_576 + "\n")
    with pytest.raises(ConfigError) as caught:
        config.load(big)
    assert [str(p) for p in caught.value.problems] == [f"{big}: larger than 1024 KiB: not a configuration file"]
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(GOOD.replace("chi-tacc", "chi-t\xe4cc").encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        config.load(latin)
    assert [str(p) for p in caught.value.problems] == [f"{latin}:10: not UTF-8 text"]


#: seconds in one unit of a duration field, by the suffix of its name
UNITS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}


def _models(model: type[BaseModel] = config.Settings) -> set[type[BaseModel]]:
    """Every pydantic model of the config, found through the annotations (lists, dicts and optionals included)."""
    found = {model}
    for field in model.model_fields.values():
        for arg in [field.annotation, *typing.get_args(field.annotation)]:
            for inner in [arg, *typing.get_args(arg)]:
                if isinstance(inner, type) and issubclass(inner, BaseModel) and inner not in found:
                    found |= _models(inner)
    return found


def _upper_bound(field: FieldInfo) -> float | None:
    bounds = [m.le for m in field.metadata if isinstance(m, annotated_types.Le)]
    bounds += [m.lt for m in field.metadata if isinstance(m, annotated_types.Lt)]
    return min(bounds) if bounds else None


def test_every_duration_has_an_upper_bound_a_wait_and_a_date_can_take() -> None:
    """A sweep_interval_seconds of 10**10 once validated, then overflowed threading.Event.wait after one cycle."""
    durations = {}
    for model in _models():
        for name, field in model.model_fields.items():
            unit = name.rpartition("_")[2]
            if field.annotation in (int, float) and (unit in UNITS or "interval" in name or "timeout" in name):
                bound = _upper_bound(field)
                assert bound is not None, f"{model.__name__}.{name} has no upper bound (le=)"
                durations[f"{model.__name__}.{name}"] = bound * UNITS.get(unit, 1)
    assert {"Site.sweep_interval_seconds", "Policy.verify_timeout_minutes", "Retention.ledger_days"} <= set(durations)
    now = datetime.now(UTC)
    for name, seconds in durations.items():
        assert seconds <= threading.TIMEOUT_MAX, name  # else Event.wait raises OverflowError
        assert now - timedelta(seconds=seconds) < now + timedelta(seconds=seconds), name  # cut-offs and deadlines


def test_cli_validate_refuses_a_sweep_interval_of_ten_billion_seconds(tmp_path: Path) -> None:
    (tmp_path / "hs.yaml").write_text(
        GOOD.replace("cloud: chi-tacc", "cloud: chi-tacc\n    sweep_interval_seconds: 10000000000")
    )
    result = hammersmith("--config", "hs.yaml", "config", "validate", cwd=tmp_path)
    assert result.returncode == 2
    assert (
        "hs.yaml:11: 'sites.tacc.sweep_interval_seconds': Input should be less than or equal to 86400 (got 10000000000)"
        in result.stderr
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "token",
    [
        "s3cr3t-t\u00f6ken-0123456789",
        " s3cr3t-token-0123456789",
        "s3cr3t-token-0123456789 ",
        "s3cr3t token 0123456789",
        "s3cr3t-token-01234\t56789",
        "s3cr3t-token-01234\x7f56789",
    ],
    ids=["non-ascii", "leading-space", "trailing-space", "inner-space", "tab", "delete"],
)
def test_a_webhook_token_that_could_never_match_is_refused_unshown(token: str) -> None:
    text = "http:\n  webhook_token: " + yaml.safe_dump(token).removesuffix("\n...\n").strip() + "\n" + GOOD
    assert problems(text) == [
        "site.yaml:2: 'http.webhook_token': Value error, must be printable ASCII without spaces or control characters"
        " (not shown: secret)"
    ]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('http: "webhook_token: s3cr3t-t0ken-abcdef"\n' + GOOD, "site.yaml:1: 'http'"),
        (
            GOOD.replace(
                "  tacc:\n    cloud: chi-tacc", '  tacc: "cloud: chi-tacc, notify: [slack://T/B/s3cr3t-t0ken]"'
            ),
            "site.yaml:9: 'sites.tacc'",
        ),
        ('sites: "uc: {cloud: x, notify: [slack://T/B/s3cr3t-t0ken]}"\n', "site.yaml:1: 'sites'"),
    ],
    ids=["http", "site", "sites"],
)
def test_a_section_written_as_a_string_is_not_echoed(text: str, where: str) -> None:
    (found,) = problems(text)
    assert found.startswith(where + ": Input should be a valid dictionary") and "s3cr3t" not in found


def test_notify_url_without_a_scheme_is_refused_unshown() -> None:
    text = GOOD.replace(
        "cloud: chi-tacc",
        "cloud: chi-tacc\n    notify:\n      - json://ok\n      - hooks.slack.com/services/T000/B000/s3cr3t",
    )
    assert problems(text) == [
        "site.yaml:13: 'sites.tacc.notify.1': Value error, an Apprise URL starts with its service,"
        " e.g. slack://, mailtos:// or json:// (not shown: secret)"
    ]


def test_a_long_wrong_value_is_cut_in_its_message() -> None:
    (found,) = problems(GOOD.replace("stuck_after_minutes: 90", "stuck_after_minutes: " + "x" * 10_000))
    assert found.endswith("(got '" + "x" * 56 + "...)")


def test_public_url_holds_no_credentials_and_is_never_echoed() -> None:
    """public_url goes into every alert's runbook_url and notification: a password there would be published."""
    text = "http:\n  public_url: https://ops:s3cr3t@agent.example.org\n" + GOOD
    assert problems(text) == [
        "site.yaml:2: 'http.public_url': Value error, must not hold user:password@ (it is published in every "
        "runbook_url; not shown)"
    ]
    assert problems("http:\n  public_url: agent.example.org\n" + GOOD) == [
        "site.yaml:2: 'http.public_url': Value error, must be an http:// or https:// URL with a host"
    ]


def test_maintenance_lease_pattern_must_compile_and_defaults_to_maint() -> None:
    """A regex that cannot compile would only fail at the first scrape: refuse it with its line."""
    assert config.parse(GOOD).sites["uc"].policy.maintenance_lease_pattern == "(?i)maint"
    text = GOOD.replace(
        "      stuck_after_minutes: 90", '      stuck_after_minutes: 90\n      maintenance_lease_pattern: "maint("'
    )
    assert problems(text) == [
        "site.yaml:7: 'sites.uc.policy.maintenance_lease_pattern': Value error, not a regular expression: "
        "missing ), unterminated subpattern at position 5 (got 'maint(')"
    ]
    text = GOOD.replace(
        "      stuck_after_minutes: 90", "      stuck_after_minutes: 90\n      maintenance_lease_pattern: ^ops-"
    )
    assert config.parse(text).sites["uc"].policy.maintenance_lease_pattern == "^ops-"
