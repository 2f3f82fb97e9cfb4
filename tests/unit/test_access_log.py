"""The access log keeps paths, but never a whole card number (found by the reliability suite's
log search: ``GET /v1/members/by-card/<card>`` put the card in every log line)."""

from partners.logs import loggable_path


def test_a_card_number_in_the_path_keeps_only_its_last_four_digits() -> None:
    assert loggable_path("/v1/members/by-card/9903619341875272") == "/v1/members/by-card/****5272"


def test_other_paths_are_logged_as_they_are() -> None:
    assert loggable_path("/v1/members/mem_1/transactions") == "/v1/members/mem_1/transactions"
