"""The call flow as a table, walked without Flask, Twilio or a database."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from ivr import flow
from ivr.flow import Call, Context, Outcome, State
from ivr.prompts import check_folder, load, placeholders
from ivr.selfservice import Payment, PromiseFacts

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"


@dataclass
class FakeLedger:
    balances: dict[str, Decimal] = field(default_factory=dict)
    failures: list[tuple[str, datetime]] = field(default_factory=list)
    charges: Decimal = Decimal(0)  # every account's charges of the last 30 days
    payment: Payment | None = None
    facts: dict[str, object] = field(default_factory=dict)  # PromiseFacts beyond the balance

    def balance(self, contract: str, at: datetime) -> Decimal | None:
        return self.balances.get(contract)

    def account_of(self, contract: str) -> int | None:
        return sorted(self.balances).index(contract) + 1 if contract in self.balances else None

    def contract_of(self, account: int) -> str | None:
        known = sorted(self.balances)
        return known[account - 1] if 0 < account <= len(known) else None

    def failures_since(self, caller: str, since: datetime) -> int:
        return sum(1 for who, at in self.failures if who == caller and at >= since)

    def balance_of(self, account: int, at: datetime) -> Decimal:
        contract = self.contract_of(account)
        assert contract is not None
        return self.balances[contract]

    def charges_since(self, account: int, since: datetime, at: datetime) -> Decimal:
        assert at - since == timedelta(days=30)
        return self.charges

    def last_payment(self, account: int, at: datetime) -> Payment | None:
        return self.payment

    def promise_facts(self, account: int, at: datetime) -> PromiseFacts:
        balance = self.balance_of(account, at)
        return PromiseFacts(balance, self.charges, **self.facts)  # type: ignore[arg-type]

    def record(self, reply: flow.Reply) -> flow.Reply:
        """Keep the failed try a step asks to record, as the web layer's unit of work does."""
        if reply.failed_try is not None:
            self.failures.append((reply.failed_try.caller, reply.failed_try.at))
        return reply


def context(ledger: FakeLedger | None = None, operator: bool = True) -> Context:
    return Context(
        caller="+73422000001",
        now=NOW,
        ledger=ledger or FakeLedger({"590000000018": Decimal("1234.56")}),
        operator_available=operator,
    )


def at(state: State, **changes: object) -> Call:
    return replace(Call(state, "ru-RU"), **changes)  # type: ignore[arg-type]


# --- the table itself ---------------------------------------------------------------------


def test_one_initial_state_and_every_state_reachable() -> None:
    seen = {flow.INITIAL_STATE}
    queue = deque([flow.INITIAL_STATE])
    # An account that may take a promised payment, so its offer is reachable too.
    ctx = context(FakeLedger({"590000000018": Decimal("10")}, charges=Decimal("650")))
    while queue:
        state = queue.popleft()
        for key in [*"0123456789*", "590000000018"]:
            reply = flow.step(Call(state, "ru-RU", account=1), key, ctx)
            if reply.next is not None and reply.next.state not in seen:
                seen.add(reply.next.state)
                queue.append(reply.next.state)
    assert seen == set(State)


def test_every_state_has_a_way_back() -> None:
    for state in State:
        reply = flow.step(Call(state, "ru-RU"), "*", context())
        assert reply.next is not None
        assert reply.next.state is flow.PARENT[state]


def test_shipped_prompt_files_pass_the_check() -> None:
    report = check_folder(PROMPTS_DIR, flow.PHRASES, flow.LANGUAGES)
    assert [str(fault) for fault in report.faults] == []
    assert len(report.files) == len(flow.LANGUAGES)


@pytest.mark.parametrize("language", flow.LANGUAGES)
def test_every_phrase_the_flow_uses_is_in_every_prompt_file(language: str) -> None:
    prompt_set = load(PROMPTS_DIR / f"{language}.toml", flow.PHRASES)
    assert prompt_set.language == language
    for name, allowed in flow.PHRASES.items():
        text = prompt_set.phrases.get(name)
        assert text is not None or name in prompt_set.audio, f"{language} lacks {name}"
        assert placeholders(text or "") <= allowed, f"{language}: {name}"


def test_every_phrase_a_step_speaks_is_declared() -> None:
    spoken: set[str] = set()
    ledger = FakeLedger({"590000000018": Decimal("10")}, charges=Decimal("650"))
    ctx = context(ledger)
    for state in State:
        for key in [None, *"0123456789*#", "590000000018", "590000000017", "590000000075"]:
            for prompts in (1, 3):
                reply = flow.step(at(state, prompts=prompts, account=1), key, ctx)
                spoken.update(line.phrase for line in (*reply.lines, *reply.prompt))
    assert spoken <= set(flow.PHRASES)
    assert {"balance_positive", "invalid_option", "no_input", "goodbye"} <= spoken


# --- state x key -> next state --------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "key", "next_state"),
    [
        (State.MAIN, "1", State.SUBSCRIBER),
        (State.MAIN, "9", State.MAIN),
        (State.MAIN, "*", State.MAIN),
        (State.SUBSCRIBER, "1", State.BILLING),
        (State.SUBSCRIBER, "2", State.SUBSCRIBER),
        (State.SUBSCRIBER, "*", State.MAIN),
        (State.BILLING, "1", State.CONTRACT),
        (State.BILLING, "2", State.BILLING),
        (State.BILLING, "*", State.SUBSCRIBER),
        (State.CONTRACT, "590000000018", State.AFTER_BALANCE),
        (State.CONTRACT, "590000000017", State.CONTRACT),
        (State.CONTRACT, "*", State.BILLING),
        (State.CONTRACT, "5900*", State.BILLING),
        (State.AFTER_BALANCE, "1", State.AFTER_BALANCE),
        (State.AFTER_BALANCE, "2", State.CONTRACT),
        (State.AFTER_BALANCE, "*", State.BILLING),
        (State.AFTER_BALANCE, "7", State.AFTER_BALANCE),
        (State.AFTER_BALANCE, "4", State.AFTER_BALANCE),
        (State.AFTER_BALANCE, "5", State.AFTER_BALANCE),  # not needed: 1234.56, no charges
        (State.PROMISE_OFFER, "*", State.AFTER_BALANCE),
    ],
)
def test_state_key_next_state(state: State, key: str, next_state: State) -> None:
    reply = flow.step(at(state, account=1), key, context())
    assert reply.next is not None
    assert reply.next.state is next_state


@pytest.mark.parametrize("state", list(State))
def test_zero_dials_the_operator_everywhere(state: State) -> None:
    reply = flow.step(Call(state, "ru-RU"), "0", context())
    assert reply.dial_operator
    assert reply.next is None
    assert reply.outcome is Outcome.OPERATOR


def test_zero_without_operator_stays_in_the_menu() -> None:
    reply = flow.step(Call(State.BILLING, "ru-RU"), "0", context(operator=False))
    assert not reply.dial_operator
    assert reply.lines[0].phrase == "no_operator"
    assert reply.next == Call(State.BILLING, "ru-RU")


def test_nine_toggles_the_language() -> None:
    english = flow.step(Call(State.MAIN, "ru-RU"), "9", context())
    assert english.next == Call(State.MAIN, "en-US")
    russian = flow.step(Call(State.MAIN, "en-US"), "9", context())
    assert russian.next == Call(State.MAIN, "ru-RU")


@pytest.mark.parametrize(("lang", "other"), [("ru-RU", "en-US"), ("en-US", "ru-RU")])
def test_the_offer_to_switch_is_a_line_of_the_other_language(lang: str, other: str) -> None:
    reply = flow.start(lang, context())
    assert reply.prompt == (
        flow.Line("main_menu"),
        flow.Line("switch_language", language=other),
    )
    again = flow.step(Call(State.MAIN, lang), "7", context())  # the menu said again
    assert [(line.phrase, line.language) for line in again.prompt] == [
        ("main_menu", None),
        ("switch_language", other),
    ]


@pytest.mark.parametrize(
    "state",
    [State.CONTRACT]
    + [s for s, menu in flow.MENUS.items() if flow.TOGGLE_LANGUAGE not in menu.keys.values()],
)
def test_only_a_menu_that_takes_nine_offers_the_switch(state: State) -> None:
    # The promise offer is made for the account whose balance was told: account 1 here.
    account = 1 if state is State.PROMISE_OFFER else None
    reply = flow.offer(Call(state, "ru-RU", account=account), context())
    assert [line.language for line in reply.prompt] == [None]


def test_nine_is_not_an_option_below_the_main_menu() -> None:
    reply = flow.step(Call(State.SUBSCRIBER, "ru-RU"), "9", context())
    assert reply.lines[0].phrase == "invalid_option"
    assert reply.next is not None
    assert reply.next.lang == "ru-RU"


# --- limits -------------------------------------------------------------------------------


@pytest.mark.parametrize("digits", [None, "", "7"])
def test_third_prompt_without_an_answer_ends_the_call(digits: str | None) -> None:
    first = flow.step(Call(State.MAIN, "ru-RU"), digits, context())
    assert first.next == Call(State.MAIN, "ru-RU", prompts=2)
    second = flow.step(first.next, digits, context())
    assert second.next is not None and second.next.prompts == 3
    third = flow.step(second.next, digits, context())
    assert third.next is None
    assert [line.phrase for line in third.lines] == ["goodbye"]
    assert third.outcome is Outcome.GAVE_UP


def test_moving_on_resets_the_prompt_count() -> None:
    reply = flow.step(Call(State.MAIN, "ru-RU", prompts=3), "1", context())
    assert reply.next == Call(State.SUBSCRIBER, "ru-RU", prompts=1)


@pytest.mark.parametrize(
    ("digits", "phrase", "outcome"),
    [
        ("5900", "wrong_length", Outcome.WRONG_NUMBER),
        ("5900000000181", "wrong_length", Outcome.WRONG_NUMBER),
        ("590000000017", "bad_check_digit", Outcome.WRONG_NUMBER),
        ("590000000075", "unknown_contract", Outcome.UNKNOWN_CONTRACT),
    ],
)
def test_wrong_numbers_are_told_apart(digits: str, phrase: str, outcome: Outcome) -> None:
    reply = flow.step(Call(State.CONTRACT, "ru-RU"), digits, context())
    assert reply.lines[0].phrase == phrase
    assert reply.prompt[0].phrase == "enter_contract_again"
    assert reply.outcome is outcome
    assert reply.next == Call(State.CONTRACT, "ru-RU", contract_tries=1)


def test_three_wrong_numbers_end_the_call() -> None:
    call: Call | None = Call(State.CONTRACT, "ru-RU")
    replies = []
    for digits in ("590000000017", "590000000075", "1"):
        assert call is not None
        reply = flow.step(call, digits, context())
        replies.append(reply)
        call = reply.next
    assert call is None
    assert [line.phrase for line in replies[-1].lines] == ["wrong_length", "too_many_tries"]
    assert replies[-1].outcome is Outcome.TOO_MANY_TRIES


def test_only_guesses_count_towards_lockout() -> None:
    ledger = FakeLedger({"590000000018": Decimal("1")})
    ctx = context(ledger)
    ledger.record(flow.step(Call(State.CONTRACT, "ru-RU"), "5900", ctx))
    ledger.record(flow.step(Call(State.CONTRACT, "ru-RU"), "590000000018", ctx))
    assert ledger.failures == []
    ledger.record(flow.step(Call(State.CONTRACT, "ru-RU"), "590000000017", ctx))
    ledger.record(flow.step(Call(State.CONTRACT, "ru-RU"), "590000000075", ctx))
    assert ledger.failures == [("+73422000001", NOW)] * 2


@pytest.mark.parametrize(
    ("before", "outcome"), [(3, Outcome.WRONG_NUMBER), (4, Outcome.LOCKED_OUT)]
)
def test_the_guess_a_step_returns_counts_towards_its_own_lockout(
    before: int, outcome: Outcome
) -> None:
    """The step's failed try is not stored yet; the flow counts it all the same."""
    ledger = FakeLedger(failures=[("+73422000001", NOW - timedelta(minutes=5))] * before)
    reply = flow.step(Call(State.CONTRACT, "ru-RU"), "590000000017", context(ledger))
    assert reply.failed_try == flow.FailedTry("+73422000001", NOW)
    assert reply.outcome is outcome
    assert (reply.next is None) is (outcome is Outcome.LOCKED_OUT)
    assert ledger.failures == [("+73422000001", NOW - timedelta(minutes=5))] * before


def test_locked_out_caller_cannot_reach_contract_entry() -> None:
    ledger = FakeLedger(failures=[("+73422000001", NOW - timedelta(minutes=5))] * 5)
    reply = flow.step(Call(State.BILLING, "ru-RU"), "1", context(ledger))
    assert reply.next is None
    assert [line.phrase for line in reply.lines] == ["locked_out"]


def test_lockout_expires_after_the_window() -> None:
    ledger = FakeLedger(failures=[("+73422000001", NOW - timedelta(minutes=61))] * 5)
    reply = flow.step(Call(State.BILLING, "ru-RU"), "1", context(ledger))
    assert reply.next is not None and reply.next.state is State.CONTRACT


# --- balance words -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "phrase", "words"),
    [
        (Decimal("123.45"), "balance_positive", "сто двадцать три рубля сорок пять копеек"),
        (Decimal("-21.01"), "balance_debt", "двадцать один рубль одна копейка"),
        (Decimal("0.00"), "balance_zero", None),
    ],
)
def test_balance_line(amount: Decimal, phrase: str, words: str | None) -> None:
    line = flow.balance_line(amount, "ru-RU")
    assert line.phrase == phrase
    assert line.values.get("amount") == words


def test_repeat_reads_the_balance_again_as_of_now() -> None:
    ledger = FakeLedger({"590000000018": Decimal("5")})
    call = Call(State.AFTER_BALANCE, "ru-RU", account=1)
    ledger.balances["590000000018"] = Decimal("6")
    reply = flow.step(call, "1", context(ledger))
    assert reply.lines[1].values["amount"] == "шесть рублей"


# --- the state in the URL -----------------------------------------------------------------


def test_call_state_round_trips_through_the_query() -> None:
    call = Call(State.AFTER_BALANCE, "en-US", prompts=2, contract_tries=1, account=7)
    assert Call.from_query(call.to_query()) == call


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"s": "nowhere", "l": "ru-RU"},
        {"s": "main", "l": "de-DE"},
        {"s": "main", "l": "ru-RU", "p": "x"},
        {"s": "main", "l": "ru-RU", "p": "0"},
        {"s": "after_balance", "l": "ru-RU", "a": "590000000017x"},
    ],
)
def test_garbled_query_is_refused(query: dict[str, str]) -> None:
    with pytest.raises(flow.BadCallState):
        Call.from_query(query)
