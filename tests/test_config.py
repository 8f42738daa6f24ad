"""Config parsing and validation: every problem, with its line, in a plain sentence."""

from __future__ import annotations

from pathlib import Path

import pytest

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
    assert (
        "known: clean-failed, dirty-ports, error-resetter, maintenance-doctor, stale-inspection, stuck-transient"
        in found
    )


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
