from decimal import Decimal

import msgspec
import pytest

from coalition.settings import Settings


def test_settings_come_from_coalition_environment_variables() -> None:
    settings = Settings.from_env(
        {
            "COALITION_POINT_VALUE": "0.005",
            "COALITION_CLEARING_FEE_BPS": "250",
            "COALITION_TIME_ZONE": "Europe/Berlin",
            "HOME": "/root",
            "COALITION_TEST_DB": "x",
        }
    )
    assert settings.point_value == Decimal("0.005")
    assert settings.clearing_fee_bps == 250
    assert settings.time_zone == "Europe/Berlin"


@pytest.mark.parametrize(
    "env",
    [
        {"COALITION_TIME_ZONE": "Mars/Olympus"},
        {"COALITION_POINT_VALUE": "-1"},
        {"COALITION_CLEARING_FEE_BPS": "ten"},
        {"COALITION_SETTLEMENT_CURRENCY": "euro"},
        {"COALITION_HOLD_TTL_DEFAULT_SECONDS": "999999999"},
        {"COALITION_SETTLEMENT_GRACE_SECONDS": "30"},  # not longer than the write deadline
    ],
)
def test_bad_settings_fail_early(env: dict[str, str]) -> None:
    with pytest.raises((ValueError, msgspec.ValidationError)):
        Settings.from_env(env)


def test_a_misspelt_setting_is_refused_not_ignored() -> None:
    with pytest.raises(ValueError, match="COALITION_DATABSE_URL"):
        Settings.from_env({"COALITION_DATABSE_URL": "postgresql://prod/db"})
