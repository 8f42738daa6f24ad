"""Part-time sites without a cloud: a schedule's windows (weekly spans over midnight and DST changes, iCalendar
files with RRULE and EXDATE), merging, the site state, the metric, the `windows` and `breaker status` output, the
config's messages for a schedule written wrong, and a whole-site window's silence in a real Alertmanager."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from hammersmith.config import Schedule, Site, parse
from hammersmith.errors import ConfigError
from hammersmith.maintenance.silences import Alertmanager
from hammersmith.maintenance.windows import Window, merge, silence_comment, silence_site, state, windows
from hammersmith.quantify.collectors import schedule as schedule_collector
from hammersmith.quantify.collectors.schedule import ScheduleCollector, watch
from hammersmith.quantify.telemetry import Telemetry
from hammersmith.testbed.prometheus import Alertmanager as AlertmanagerServer
from hammersmith.testbed.prometheus import missing_binaries
from tests.conftest import hammersmith


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def weekly(*spans: tuple[list[str], str, str], zone: str = "UTC", nodes: tuple[str, ...] = ()) -> Schedule:
    return Schedule(
        name="away",
        timezone=zone,
        nodes=list(nodes),
        offline=[{"days": days, "start": start, "end": end} for days, start, end in spans],
    )


def spans(found: list[Window]) -> list[tuple[datetime, datetime]]:
    return [(w.start, w.end) for w in found]


def test_a_span_over_midnight_ends_the_next_day_and_one_under_way_at_the_start_is_included() -> None:
    schedule = weekly((["sat"], "22:00", "06:00"), zone="Europe/Paris")
    # Saturday 2026-01-10 22:00 CET is 21:00 UTC; asked from Sunday 03:00 UTC, that window is still under way
    found = windows(schedule, utc(2026, 1, 11, 3), utc(2026, 1, 25))
    assert spans(found) == [
        (utc(2026, 1, 10, 21), utc(2026, 1, 11, 5)),
        (utc(2026, 1, 17, 21), utc(2026, 1, 18, 5)),
        (utc(2026, 1, 24, 21), utc(2026, 1, 25, 5)),
    ]
    assert {w.schedule for w in found} == {"away"}


def test_weekly_spans_keep_their_local_hours_across_dst_changes() -> None:
    schedule = weekly((["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "01:00", "03:00"), zone="America/Chicago")
    spring = spans(windows(schedule, utc(2026, 3, 7), utc(2026, 3, 10)))
    assert spring == [
        (utc(2026, 3, 7, 7), utc(2026, 3, 7, 9)),  # CST: UTC-6
        (utc(2026, 3, 8, 7), utc(2026, 3, 8, 8)),  # 02:00 CST becomes 03:00 CDT: an hour shorter
        (utc(2026, 3, 9, 6), utc(2026, 3, 9, 8)),  # CDT: UTC-5
    ]
    autumn = spans(windows(schedule, utc(2026, 10, 31, 12), utc(2026, 11, 2, 12)))
    assert autumn == [
        (utc(2026, 11, 1, 6), utc(2026, 11, 1, 9)),  # 01:00 CDT to 03:00 CST: the repeated hour makes it three
        (utc(2026, 11, 2, 7), utc(2026, 11, 2, 9)),
    ]


def test_overlapping_and_touching_windows_merge() -> None:
    schedule = weekly((["mon"], "08:00", "12:00"), (["mon"], "11:00", "14:00"), (["mon"], "14:00", "15:00"))
    assert spans(windows(schedule, utc(2026, 1, 5), utc(2026, 1, 6))) == [(utc(2026, 1, 5, 8), utc(2026, 1, 5, 15))]
    apart = [Window("a", utc(2026, 1, 1, 1), utc(2026, 1, 1, 2)), Window("a", utc(2026, 1, 1, 3), utc(2026, 1, 1, 4))]
    assert merge(reversed(apart)) == apart


ICAL = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//hammersmith tests//EN
BEGIN:VTIMEZONE
TZID:Europe/Paris
BEGIN:STANDARD
DTSTART:19701025T030000
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:19700329T020000
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
END:DAYLIGHT
END:VTIMEZONE
BEGIN:VEVENT
UID:lent-1@example.org
DTSTAMP:20260101T000000Z
SUMMARY:hardware lent to the teaching lab
DTSTART;TZID=Europe/Paris:20260302T180000
DTEND;TZID=Europe/Paris:20260303T080000
RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=6
EXDATE;TZID=Europe/Paris:20260316T180000
END:VEVENT
BEGIN:VEVENT
UID:power-1@example.org
DTSTAMP:20260101T000000Z
SUMMARY:machine room power work
DTSTART;VALUE=DATE:20260410
DTEND;VALUE=DATE:20260411
END:VEVENT
END:VCALENDAR
"""


def test_ical_events_with_rrule_and_exdate_are_the_windows(tmp_path: Path) -> None:
    calendar = tmp_path / "lent.ics"
    calendar.write_text(ICAL.replace("\n", "\r\n"))
    schedule = Schedule(name="lent", ical=str(calendar), timezone="Europe/Paris")
    found = windows(schedule, utc(2026, 3, 1), utc(2026, 5, 1))
    assert spans(found) == [
        (utc(2026, 3, 2, 17), utc(2026, 3, 3, 7)),
        (utc(2026, 3, 9, 17), utc(2026, 3, 10, 7)),
        # 16 March is excluded (EXDATE)
        (utc(2026, 3, 23, 17), utc(2026, 3, 24, 7)),
        (utc(2026, 3, 30, 16), utc(2026, 3, 31, 6)),  # CEST from 29 March: the same local hours
        (utc(2026, 4, 6, 16), utc(2026, 4, 7, 6)),
        (utc(2026, 4, 9, 22), utc(2026, 4, 10, 22)),  # an all-day event: the schedule's local midnight to midnight
    ]
    assert [w.schedule for w in found] == ["lent"] * 6


def test_site_state_says_offline_until_when_and_the_next_change() -> None:
    site = Site(cloud="c", schedules=[weekly((["mon"], "08:00", "12:00"))])
    during = state(site, utc(2026, 1, 5, 9))
    assert (during.offline, during.until, during.next_change) == (True, utc(2026, 1, 5, 12), utc(2026, 1, 5, 12))
    assert during.schedules == ("away",)
    before = state(site, utc(2026, 1, 5, 7))
    assert (before.offline, before.until, before.next_change) == (False, None, utc(2026, 1, 5, 8))
    # a schedule of some nodes takes those nodes away, not the site
    partial = Site(cloud="c", schedules=[weekly((["mon"], "08:00", "12:00"), nodes=("gpu-1",))])
    assert state(partial, utc(2026, 1, 5, 9)) == state(partial, utc(2026, 1, 5, 7))
    assert not state(partial, utc(2026, 1, 5, 9)).offline


def test_the_metric_is_1_during_a_window_with_the_next_change(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schedule_collector, "_watched", {})  # the sites of this test only
    now = datetime.now(UTC)
    start = now - timedelta(hours=1)
    end = now + timedelta(hours=1, minutes=1)
    away = weekly(([start.strftime("%a").lower()], start.strftime("%H:%M"), end.strftime("%H:%M")))
    watch("pt", Site(cloud="c", schedules=[away]))
    watch("always", Site(cloud="c", schedules=[weekly((["mon"], "00:00", "00:01"))]))
    families = {f.name: f for f in ScheduleCollector(Telemetry(["pt", "always"])).collect()}
    offline = {s.labels["site"]: s.value for s in families["hammersmith_site_scheduled_offline"].samples}
    assert offline["pt"] == 1 and offline["always"] == 0
    change = {
        s.labels["site"]: s.value for s in families["hammersmith_site_schedule_next_change_timestamp_seconds"].samples
    }
    assert change["pt"] == end.replace(second=0, microsecond=0).timestamp()


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(text, "h.yaml")
    return [str(p) for p in caught.value.problems]


def _config(schedule: str) -> str:
    return "sites:\n  pt:\n    cloud: c\n    schedules:\n" + schedule


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        (
            "      - name: a\n        offline:\n          - {days: [mon, frday], start: '18:00', end: '06:00'}\n",
            "h.yaml:7: 'sites.pt.schedules.0.offline.0.days': Value error, unknown day 'frday': use mon, tue, wed, "
            "thu, fri, sat, sun",
        ),
        (
            "      - name: a\n        offline:\n          - {days: [mon], start: '18:00', end: '18:00'}\n",
            "h.yaml:7: 'sites.pt.schedules.0.offline.0': Value error, start and end are both 18:00: a span needs a "
            "length (use 00:00 to 23:59)",
        ),
        (
            "      - name: a\n        offline:\n          - {days: [mon], start: '6pm', end: '06:00'}\n",
            "h.yaml:7: 'sites.pt.schedules.0.offline.0.start': Value error, not a time of day: use HH:MM, "
            "00:00 to 23:59 (got '6pm')",
        ),
        (
            "      - name: a\n        timezone: Europe/Pariss\n        ical: /etc/a.ics\n",
            "h.yaml:6: 'sites.pt.schedules.0.timezone': Value error, unknown IANA time zone (e.g. America/Chicago, "
            "Europe/Paris, UTC) (got 'Europe/Pariss')",
        ),
        (
            "      - name: a\n        lead_hours: 2\n",
            "h.yaml:5: 'sites.pt.schedules.0': Value error, schedule 'a' needs exactly one of `offline` (weekly "
            "spans) or `ical` (a calendar)",
        ),
        (
            "      - name: a\n        ical: /etc/a.ics\n        offline:\n          - {days: [mon], start: '01:00', "
            "end: '02:00'}\n",
            "h.yaml:5: 'sites.pt.schedules.0': Value error, schedule 'a' needs exactly one of `offline` (weekly "
            "spans) or `ical` (a calendar)",
        ),
        (
            "      - name: a\n        ical: calendars/a.ics\n",
            "h.yaml:6: 'sites.pt.schedules.0.ical': Value error, must be an absolute path or an http(s):// URL (got "
            "'calendars/a.ics')",
        ),
        (
            "      - {name: a, ical: /a.ics}\n      - {name: a, ical: /b.ics}\n",
            "h.yaml:4: 'sites.pt.schedules': Value error, schedule name(s) used twice: a",
        ),
    ],
    ids=["bad-day", "start-equals-end", "bad-time", "unknown-zone", "neither", "both", "relative-ical", "twice"],
)
def test_a_schedule_written_wrong_says_what_and_where(schedule: str, message: str) -> None:
    assert message in _problems(_config(schedule))


def test_full_day_names_in_any_case_are_read() -> None:
    text = _config(
        "      - name: a\n        offline:\n          - {days: [Monday, SUNDAY], start: '00:00', end: '23:59'}\n"
    )
    assert parse(text).sites["pt"].schedules[0].offline[0].days == ["mon", "sun"]


def test_windows_command_lists_upcoming_windows_and_the_state(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    start, end = now - timedelta(hours=1), now + timedelta(hours=2)
    config = {
        "state_dir": str(tmp_path),
        "sites": {
            "pt": {
                "cloud": "nowhere",  # the command reads the config and the store only
                "schedules": [
                    {
                        "name": "lent",
                        "offline": [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                                     "start": start.strftime("%H:%M"), "end": end.strftime("%H:%M")}],
                    },
                    {"name": "gpus", "nodes": ["gpu_a100"],
                     "offline": [{"days": ["sun"], "start": "01:00", "end": "02:00"}]},
                ],
            },
            "full": {"cloud": "nowhere"},
        },
    }  # fmt: skip
    path = tmp_path / "h.yaml"
    path.write_text(yaml.safe_dump(config))
    done = hammersmith("--config", str(path), "windows", "--days", "8", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = {entry["site"]: entry for entry in json.loads(done.stdout)}
    assert report["full"] == {"site": "full", "state": None, "windows": []}
    pt = report["pt"]
    assert pt["state"]["offline"] is True and pt["state"]["schedules"] == ["lent"]
    first = pt["windows"][0]
    assert (first["schedule"], first["whole_site"], first["maintenances"]) == ("lent", True, [])
    assert datetime.fromisoformat(first["start"]) <= now < datetime.fromisoformat(first["end"])
    assert datetime.fromisoformat(pt["state"]["until"]) == datetime.fromisoformat(first["end"])
    gpus = [w for w in pt["windows"] if w["schedule"] == "gpus"]
    assert len(gpus) == 1 and gpus[0]["nodes"] == ["gpu_a100"] and not gpus[0]["whole_site"]
    assert sum(w["schedule"] == "lent" for w in pt["windows"]) in (8, 9)
    text = hammersmith("--config", str(path), "windows", "--site", "pt", cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert "offline as scheduled until" in text.stdout
    # the site's status says so too
    status = hammersmith("--config", str(path), "breaker", "status", "--site", "pt", "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["schedule"] == pt["state"]
    status = hammersmith("--config", str(path), "breaker", "status", "--site", "pt", cwd=tmp_path)
    assert f"offline as scheduled until {pt['state']['until']}" in " ".join(status.stdout.split())


@pytest.mark.skipif("alertmanager" in missing_binaries(), reason="alertmanager is not installed")
def test_a_whole_site_window_is_silenced_once_in_a_real_alertmanager(tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    window = Window("lent", now + timedelta(hours=1), now + timedelta(hours=3))
    with AlertmanagerServer(tmp_path / "am") as server:
        server.start("route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n")
        client = Alertmanager(server.url)
        silence_site("pt", client, window)
        silence_site("pt", client, window)  # the next cycle finds it
        (silence,) = httpx.get(f"{server.url}/api/v2/silences", timeout=10).json()
        assert silence["matchers"] == [{"name": "site", "value": "pt", "isRegex": False, "isEqual": True}]
        assert silence["status"]["state"] == "pending" and silence["createdBy"] == "hammersmith schedule"
        assert datetime.fromisoformat(silence["endsAt"]) == window.end
        assert silence["comment"] == silence_comment(window)
        assert silence_comment(window).startswith("offline as scheduled: lent ")
