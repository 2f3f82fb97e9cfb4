"""Pure clearing and netting: for any cleared points, nets plus fees are exactly zero."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from settlement.calc import clear, instruction, net_positions, roll_forward, zero_sum

PARTNERS = ["a", "b", "c", "d"]
pairs = st.dictionaries(
    st.tuples(st.sampled_from(PARTNERS), st.sampled_from(PARTNERS)),
    st.integers(-(10**9), 10**9),
    max_size=12,
)
point_values = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("10"), places=4)


@given(pairs, point_values, st.integers(0, 10_000))
def test_net_positions_plus_fees_sum_to_zero(
    cleared: dict[tuple[str, str], int], point_value: Decimal, fee_bps: int
) -> None:
    lines = clear(cleared, point_value, "EUR", fee_bps)
    assert all(line.payer != line.payee for line in lines)
    net = net_positions(lines, PARTNERS)
    assert zero_sum(net, lines) == 0


def test_one_half_even_rounding_per_pair_not_per_line() -> None:
    # Three redemptions of 1 point at 0.005 EUR: per line 0 + 0 + 0 (half-even), per pair 2.
    [line] = clear({("a", "b"): 3}, Decimal("0.005"), "EUR", 100)
    assert (line.value_minor, line.fee_minor) == (2, 0)
    [line] = clear({("a", "b"): 250}, Decimal("0.01"), "EUR", 100)
    assert (line.value_minor, line.fee_minor) == (250, 2)  # 2.5 -> 2
    assert clear({("a", "a"): 100}, Decimal("0.01"), "EUR", 100) == []  # own points: no money


def test_roll_forward_lines_and_instructions() -> None:
    rf = roll_forward(
        1000,
        {
            "earn": 80,
            "redeem": -250,
            "debt_repayment": -80,
            "capture": 0,
            "expire": -10,
            "redemption_reversal": 5,
            "hold": 0,
            "release": 0,
        },
    )
    assert (rf.issued_points, rf.redeemed_points, rf.expired_points) == (80, 330, 10)
    assert rf.closing_points == 1000 + 80 - 330 + 5 - 10
    assert [instruction(n) for n in (5, -5, 0)] == ["pay_out", "pay_in", "none"]


def test_an_unknown_movement_kind_is_refused() -> None:
    import pytest

    with pytest.raises(ValueError, match="unclassified"):
        roll_forward(0, {"teleport": 5})
