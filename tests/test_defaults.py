"""Every default is written once: in the settings models. The pure records
built from them (`RetryPolicy`, `StoryParams`) have none, and the schedule
of prefect.yaml (read by `prefect deploy`) is the settings' own."""

import dataclasses

import yaml

from flows.settings import RetrySettings, ScheduleSettings, StorySettings
from tests.conftest import REPO
from transforms.fingerprints import StoryParams
from transforms.retries import RetryPolicy


def test_pure_parameter_records_carry_no_defaults_of_their_own():
    for record in (RetryPolicy, StoryParams):
        defaults = [f.name for f in dataclasses.fields(record) if f.default is not dataclasses.MISSING]
        assert defaults == [], f"{record.__name__} repeats defaults of the settings: {defaults}"


def test_settings_build_the_records_with_every_field():
    assert dataclasses.asdict(RetrySettings().policy()) == RetrySettings().model_dump()
    assert dataclasses.asdict(StorySettings().params()) == StorySettings().model_dump()


def test_prefect_yaml_schedules_like_the_settings():
    deployment = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"][0]
    (schedule,) = deployment["schedules"]
    assert (schedule["cron"], schedule["timezone"]) == (ScheduleSettings().cron, ScheduleSettings().timezone)
