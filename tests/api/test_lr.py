"""Learning-rate strategies: every documented form, and the malformed ones users type."""

import pytest

from galley.api.lr import MAX_EPOCHS, parse_learning_rate_strategy


def test_reference_strategy_is_twenty_epochs_at_one_thousandth() -> None:
    strategy = parse_learning_rate_strategy("20:0.001")
    assert strategy.epochs == 20
    assert [strategy.rate_at(e) for e in (1, 10, 20)] == [0.001, 0.001, 0.001]


def test_piecewise_strategy_switches_rate_after_the_boundary() -> None:
    strategy = parse_learning_rate_strategy("10:0.001,20:0.0001")
    assert strategy.epochs == 20
    assert strategy.rate_at(10) == 0.001
    assert strategy.rate_at(11) == 0.0001
    assert strategy.rate_at(20) == 0.0001


def test_bare_rate_runs_for_max_epochs() -> None:
    strategy = parse_learning_rate_strategy("0.001", max_epochs=7)
    assert strategy.rates == (0.001,) * 7


def test_spaces_around_tokens_are_tolerated() -> None:
    assert parse_learning_rate_strategy(" 5:0.01, 8:1e-3 ").rates == (0.01,) * 5 + (0.001,) * 3


def test_rate_outside_the_schedule_is_an_error() -> None:
    with pytest.raises(IndexError):
        parse_learning_rate_strategy("3:0.1").rate_at(4)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("20:", "not a learning-rate strategy"),
        (":0.1", "not a learning-rate strategy"),
        ("a:0.1", "not a learning-rate strategy"),
        ("10:0.1,5:0.01", "must increase strictly"),
        ("10:0.1,10:0.01", "must increase strictly"),
        ("0:0.1", "must be in 1.."),
        ("-1", "not a learning-rate strategy"),
        ("0", "must be a number in (0"),
        ("10:0", "must be a number in (0"),
        ("", "is empty"),
        ("   ", "is empty"),
        ("20 0.001", "not a learning-rate strategy"),
        ("20:0.001;30:0.1", "not a learning-rate strategy"),
        ("10:0.001,", "not a learning-rate strategy"),
        ("99999999999999999999:0.1", f"1..{MAX_EPOCHS}"),
        ("10:1e400", "must be a number in (0"),
        ("10:50", "must be a number in (0"),
        ("nan", "not a learning-rate strategy"),
        ("inf", "not a learning-rate strategy"),
    ],
)
def test_malformed_strategies_are_refused_with_the_expected_form(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_learning_rate_strategy(text)
    assert fragment in str(error.value)


def test_bare_rate_with_too_many_epochs_is_refused() -> None:
    with pytest.raises(ValueError, match="max_epochs"):
        parse_learning_rate_strategy("0.1", max_epochs=MAX_EPOCHS + 1)
