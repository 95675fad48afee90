"""The call flow: states, keys, transitions and limits, declared once as data.

Pure: a step takes the call's state, the digits the caller pressed, the moment and a
ledger to ask (reads only); it returns what to say, where the call goes next and what to
record (a failed try, which the web layer's unit of work stores). It knows neither Flask,
Twilio nor SQL. Read `MENUS` and `PARENT` to draw the flow. About 450 lines on purpose:
the table, what a step returns and the steps stay in one file, so the flow reads in one.
The self-service answers after the balance (issue 10) take it past 550; their rules (days
left, may a promise be offered) are in `ivr.selfservice`, and only what is said is here.

    MAIN --1--> SUBSCRIBER --1--> BILLING --1--> CONTRACT --ok--> AFTER_BALANCE --5--> PROMISE_OFFER
      ^9 toggles language   2: tariffs      2: payment ways    ^2 another contract   1 takes it
                                                      4: last payment, 5: promised payment
    a menu that takes 9 also offers it, in the other language's words and voice
    everywhere: * back to PARENT, 0 operator, silence/invalid key: prompt again (3 in all)
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Protocol
from zoneinfo import ZoneInfo

from ivr.contract import CONTRACT_LENGTH, Verdict, verdict
from ivr.errors import IvrError
from ivr.languages import LANGUAGES as LANGUAGES  # the languages a call can be in
from ivr.languages import other_language
from ivr.money import amount_in_words, date_in_words, days_in_words, digits_in_words
from ivr.selfservice import (
    DAYS_IN_A_YEAR,
    WINDOW,
    Payment,
    PromiseFacts,
    PromiseRules,
    Refusal,
    Terms,
    days_left,
    judge,
    next_allowed,
    taken_by,
)

BACK_KEY = "*"
OPERATOR_KEY = "0"
CONTRACT_FINISH_KEY = "#"


class State(enum.Enum):
    """Where a call is: each state is a prompt waiting for keys."""

    MAIN = "main"
    SUBSCRIBER = "subscriber"
    BILLING = "billing"
    CONTRACT = "contract"
    AFTER_BALANCE = "after_balance"
    PROMISE_OFFER = "promise_offer"


class Outcome(enum.Enum):
    """How a step ended, for the call log."""

    MENU = "menu"
    BALANCE_TOLD = "balance_told"
    WRONG_NUMBER = "wrong_number"
    UNKNOWN_CONTRACT = "unknown_contract"
    TOO_MANY_TRIES = "too_many_tries"
    LOCKED_OUT = "locked_out"
    NO_INPUT = "no_input"
    INVALID_KEY = "invalid_key"
    GAVE_UP = "gave_up"
    OPERATOR = "operator"
    NO_OPERATOR = "no_operator"
    HUNG_UP = "hung_up"
    LAST_PAYMENT_TOLD = "last_payment_told"
    PROMISE_OFFERED = "promise_offered"
    PROMISE_TAKEN = "promise_taken"
    # A promise not offered, and the rule that stopped it (the column holds 20 characters).
    REFUSED_RUNNING = "refused:" + Refusal.RUNNING.value
    REFUSED_RECENT = "refused:" + Refusal.RECENT.value
    REFUSED_NOT_NEEDED = "refused:" + Refusal.NOT_NEEDED.value
    REFUSED_OVER_MAX = "refused:" + Refusal.OVER_MAX.value


class BadCallState(IvrError):
    """The per-call state carried in a webhook URL cannot be read."""


# --- actions a key can trigger --------------------------------------------------------


@dataclass(frozen=True)
class Go:
    """Move to another menu."""

    to: State


@dataclass(frozen=True)
class Inform:
    """Say a phrase, then offer the same menu again."""

    phrase: str


@dataclass(frozen=True)
class Special:
    """An action with its own handling in `step`."""

    name: str


TOGGLE_LANGUAGE = Special("toggle_language")
REPEAT_BALANCE = Special("repeat_balance")
HANG_UP = Special("hang_up")
LAST_PAYMENT = Special("last_payment")
PROMISE = Special("promise")
TAKE_PROMISE = Special("take_promise")
Action = Go | Inform | Special


@dataclass(frozen=True)
class Menu:
    """A prompt and the keys it answers besides the global `*` and `0`."""

    prompt: str
    keys: Mapping[str, Action]


MENUS: Mapping[State, Menu] = {
    State.MAIN: Menu(
        "main_menu", {"1": Go(State.SUBSCRIBER), "9": TOGGLE_LANGUAGE}
    ),
    State.SUBSCRIBER: Menu(
        "subscriber_menu", {"1": Go(State.BILLING), "2": Inform("tariffs_info")}
    ),
    State.BILLING: Menu(
        "billing_menu", {"1": Go(State.CONTRACT), "2": Inform("payment_methods")}
    ),
    State.AFTER_BALANCE: Menu(
        "after_balance_menu",
        {
            "1": REPEAT_BALANCE,
            "2": Go(State.CONTRACT),
            "3": HANG_UP,
            "4": LAST_PAYMENT,
            "5": PROMISE,
        },
    ),
    # `*` cancels the offer (back to the after-balance menu); its prompt names the terms.
    State.PROMISE_OFFER: Menu("promise_offer", {"1": TAKE_PROMISE}),
}
# Contract entry is not a menu: it takes a whole number, see `_contract_entry`.
CONTRACT_PROMPT = "enter_contract"
# The offer to switch, said after a menu that takes the language key. It is a phrase of the
# language switched *to*, spoken from that language's file in its voice: a <Say> never
# mixes two languages, and no single file can put Russian words in an English voice.
SWITCH_LANGUAGE_PROMPT = "switch_language"
PARENT: Mapping[State, State] = {
    State.MAIN: State.MAIN,
    State.SUBSCRIBER: State.MAIN,
    State.BILLING: State.SUBSCRIBER,
    State.CONTRACT: State.BILLING,
    State.AFTER_BALANCE: State.BILLING,
    State.PROMISE_OFFER: State.AFTER_BALANCE,
}
INITIAL_STATE = State.MAIN

# Every phrase the flow speaks, with the placeholders it fills in.
PHRASES: Mapping[str, frozenset[str]] = {
    "greeting": frozenset(),
    "main_menu": frozenset(),
    "switch_language": frozenset(),  # from the other language's file, see SWITCH_LANGUAGE_PROMPT
    "subscriber_menu": frozenset(),
    "billing_menu": frozenset(),
    "tariffs_info": frozenset(),
    "payment_methods": frozenset(),
    "enter_contract": frozenset(),
    "enter_contract_again": frozenset(),
    "wrong_length": frozenset({"length"}),
    "bad_check_digit": frozenset(),
    "unknown_contract": frozenset(),
    "balance_intro": frozenset({"contract"}),
    "balance_positive": frozenset({"amount"}),
    "balance_zero": frozenset(),
    "balance_debt": frozenset({"amount"}),
    "after_balance_menu": frozenset(),
    "no_input": frozenset(),
    "invalid_option": frozenset(),
    "operator_connecting": frozenset(),
    "no_operator": frozenset(),
    "too_many_tries": frozenset(),
    "locked_out": frozenset(),
    "goodbye": frozenset(),
    "apology": frozenset(),
    # Self-service after the balance (issue 10).
    "days_left": frozenset({"days"}),
    "days_left_under_one": frozenset(),
    "days_left_over_year": frozenset(),
    "last_payment": frozenset({"amount", "date"}),
    "no_payments": frozenset(),
    "promise_offer": frozenset({"amount", "date"}),
    "promise_taken": frozenset({"date"}),
    "promise_running": frozenset({"date"}),
    "promise_recent": frozenset({"date"}),
    "promise_not_needed": frozenset(),
    "promise_over_max": frozenset({"amount"}),
}


def _check_table() -> None:
    """Fail at import if the table is inconsistent: every state has a prompt and a way back."""
    for state in State:
        if state not in PARENT:
            raise AssertionError(f"{state} has no parent for '*'")
        if state is not State.CONTRACT and state not in MENUS:
            raise AssertionError(f"{state} has no menu")
    for menu in MENUS.values():
        for key, action in menu.keys.items():
            if key in (BACK_KEY, OPERATOR_KEY) or len(key) != 1 or key not in "0123456789":
                raise AssertionError(f"{menu.prompt}: key {key!r} clashes or is not a digit")
            if isinstance(action, Inform) and action.phrase not in PHRASES:
                raise AssertionError(f"{menu.prompt}: unknown phrase {action.phrase}")
        if menu.prompt not in PHRASES:
            raise AssertionError(f"unknown prompt {menu.prompt}")
    if SWITCH_LANGUAGE_PROMPT not in PHRASES:
        raise AssertionError(f"unknown prompt {SWITCH_LANGUAGE_PROMPT}")


_check_table()


# --- what a step returns ----------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One phrase to speak, with its placeholders' values, in a language (None: the call's)."""

    phrase: str
    values: Mapping[str, str] = field(default_factory=dict)
    language: str | None = None


@dataclass(frozen=True)
class Gather:
    """How the next keys are collected."""

    num_digits: int
    finish_on_key: str
    timeout_s: int


@dataclass(frozen=True)
class Limits:
    """The bounds a call runs within."""

    prompts_per_menu: int = 3
    contract_tries: int = 3
    lockout_failures: int = 5
    lockout_window: timedelta = timedelta(hours=1)
    menu_timeout_s: int = 5
    contract_timeout_s: int = 10
    promise: PromiseRules = PromiseRules()


@dataclass(frozen=True)
class Call:
    """The per-call state; it rides in the webhook URL between steps."""

    state: State
    lang: str
    prompts: int = 1  # how many times the current prompt has been offered
    contract_tries: int = 0
    # The account last told, for "repeat": its id, never the contract number, which
    # would otherwise sit in every proxy's access log of the action URLs.
    account: int | None = None

    def to_query(self) -> dict[str, str]:
        """Encode as URL query parameters."""
        query = {
            "s": self.state.value,
            "l": self.lang,
            "p": str(self.prompts),
            "k": str(self.contract_tries),
        }
        if self.account is not None:
            query["a"] = str(self.account)
        return query

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> Call:
        """Decode URL query parameters; raise BadCallState when they make no sense."""
        try:
            state = State(query["s"])
            lang = query["l"]
            prompts = int(query.get("p", "1"))
            tries = int(query.get("k", "0"))
            account = int(query["a"]) if "a" in query else None
        except (KeyError, ValueError):
            # No detail: the message would echo whatever the URL held.
            raise BadCallState("cannot read the call state") from None
        if lang not in LANGUAGES or not 1 <= prompts <= 99 or not 0 <= tries <= 99:
            raise BadCallState("the call state is out of range")
        return cls(state, lang, prompts, tries, account)


@dataclass(frozen=True)
class FailedTry:
    """A guessed contract number to count against the caller for the lockout."""

    caller: str
    at: datetime


@dataclass(frozen=True)
class PromiseToWrite:
    """A promised payment the caller took: the web layer's unit of work writes it, once."""

    account: int
    amount: Decimal
    taken_at: datetime
    returns_at: datetime
    call_sid: str


@dataclass(frozen=True)
class Reply:
    """What to say, and where the call goes: a Gather for `next`, a transfer, or a hangup."""

    lines: tuple[Line, ...]
    next: Call | None = None  # None: the call ends after the lines
    prompt: tuple[Line, ...] = ()  # said inside the Gather, so keys barge in
    gather: Gather | None = None
    dial_operator: bool = False
    outcome: Outcome = Outcome.MENU
    contract: str | None = None  # the contract this step looked up, for the call log
    failed_try: FailedTry | None = None  # to record before the reply is sent
    # To write before the reply is sent; if the database refuses, `promise_not_written`.
    promise: PromiseToWrite | None = None


class Ledger(Protocol):
    """What the flow asks of the ledger."""

    def balance(self, contract: str, at: datetime) -> Decimal | None: ...

    def account_of(self, contract: str) -> int | None: ...

    def contract_of(self, account: int) -> str | None: ...

    def failures_since(self, caller: str, since: datetime) -> int: ...

    def charges_since(self, account: int, since: datetime, at: datetime) -> Decimal: ...

    def last_payment(self, account: int, at: datetime) -> Payment | None: ...

    def promise_facts(self, account: int, at: datetime) -> PromiseFacts: ...


# Dates are told in the hotline's time zone: its number's (phones.time_zone), else this.
DEFAULT_ZONE = ZoneInfo("Asia/Yekaterinburg")


@dataclass(frozen=True)
class Context:
    """Everything a step may consult besides the call state and the digits."""

    caller: str
    now: datetime
    ledger: Ledger
    operator_available: bool
    limits: Limits = Limits()
    call_sid: str = ""  # names the call in a promised payment's memo and its guard
    zone: tzinfo = DEFAULT_ZONE


# --- the steps ----------------------------------------------------------------------------


def start(lang: str, ctx: Context) -> Reply:
    """Answer a new call: the greeting, then the main menu."""
    return offer(Call(INITIAL_STATE, lang), ctx, before=(Line("greeting"),))


def offer(call: Call, ctx: Context, before: tuple[Line, ...] = ()) -> Reply:
    """Say `before`, then the prompt of the call's state inside a Gather."""
    limits = ctx.limits
    if call.state is State.PROMISE_OFFER:
        return _offer_promise(call, ctx, before)
    if call.state is State.CONTRACT:
        phrase = "enter_contract_again" if call.contract_tries else CONTRACT_PROMPT
        gather = Gather(CONTRACT_LENGTH, CONTRACT_FINISH_KEY, limits.contract_timeout_s)
        prompt: tuple[Line, ...] = (Line(phrase),)
    else:
        prompt = menu_prompt(call)
        gather = Gather(1, "", limits.menu_timeout_s)
    return Reply(lines=before, next=call, prompt=prompt, gather=gather)


def menu_prompt(call: Call) -> tuple[Line, ...]:
    """Return what a menu says: its prompt, then the offer to switch if it takes that key."""
    menu = MENUS[call.state]
    if TOGGLE_LANGUAGE not in menu.keys.values():
        return (Line(menu.prompt),)
    switch = Line(SWITCH_LANGUAGE_PROMPT, language=other_language(call.lang))
    return (Line(menu.prompt), switch)


def step(call: Call, digits: str | None, ctx: Context) -> Reply:
    """Answer the keys pressed at the call's current prompt (None or "" means silence)."""
    if not digits:
        return _again(call, ctx, Line("no_input"), Outcome.NO_INPUT)
    if BACK_KEY in digits:
        return offer(_enter(call, PARENT[call.state]), ctx)
    if digits == OPERATOR_KEY:
        return _operator(call, ctx)
    if call.state is State.CONTRACT:
        return _contract_entry(call, digits, ctx)
    action = MENUS[call.state].keys.get(digits)
    if action is None:
        return _again(call, ctx, Line("invalid_option"), Outcome.INVALID_KEY)
    return _act(call, action, ctx)


def _act(call: Call, action: Action, ctx: Context) -> Reply:
    if isinstance(action, Go):
        if action.to is State.CONTRACT and _locked_out(ctx):
            return _hang_up(Line("locked_out"), Outcome.LOCKED_OUT)
        return offer(_enter(call, action.to), ctx)
    if isinstance(action, Inform):
        return offer(replace(call, prompts=1), ctx, before=(Line(action.phrase),))
    if action is TOGGLE_LANGUAGE:
        return offer(replace(_enter(call, State.MAIN), lang=other_language(call.lang)), ctx)
    if action is REPEAT_BALANCE and call.account is not None:
        return _repeat_balance(call, call.account, ctx)
    if action is HANG_UP:
        return _hang_up(Line("goodbye"), Outcome.HUNG_UP)
    if action is LAST_PAYMENT and call.account is not None:
        return _last_payment(call, call.account, ctx)
    if action is PROMISE and call.account is not None:
        return offer(_enter(call, State.PROMISE_OFFER), ctx)
    if action is TAKE_PROMISE and call.account is not None:
        return _take_promise(call, call.account, ctx)
    return _again(call, ctx, Line("invalid_option"), Outcome.INVALID_KEY)


def _enter(call: Call, state: State) -> Call:
    """Move to `state` with a fresh prompt count; the call's contract tries carry on."""
    return replace(call, state=state, prompts=1)


def _again(call: Call, ctx: Context, why: Line, outcome: Outcome) -> Reply:
    """Offer the same prompt again after `why`, unless it has been offered enough times."""
    if call.prompts >= ctx.limits.prompts_per_menu:
        return _hang_up(Line("goodbye"), Outcome.GAVE_UP)
    reply = offer(replace(call, prompts=call.prompts + 1), ctx, before=(why,))
    return replace(reply, outcome=outcome)


def _operator(call: Call, ctx: Context) -> Reply:
    if ctx.operator_available:
        return Reply(
            lines=(Line("operator_connecting"),), dial_operator=True, outcome=Outcome.OPERATOR
        )
    reply = offer(replace(call, prompts=1), ctx, before=(Line("no_operator"),))
    return replace(reply, outcome=Outcome.NO_OPERATOR)


def _hang_up(line: Line, outcome: Outcome) -> Reply:
    return Reply(lines=(line,), outcome=outcome)


def _contract_entry(call: Call, digits: str, ctx: Context) -> Reply:
    """Check the keyed-in number, then look it up; a wrong one costs one of the call's tries."""
    if _locked_out(ctx):
        return _hang_up(Line("locked_out"), Outcome.LOCKED_OUT)
    found = verdict(digits)
    if found is Verdict.WRONG_LENGTH:
        why = Line("wrong_length", {"length": str(CONTRACT_LENGTH)})
        return _failed(call, ctx, why, digits, Outcome.WRONG_NUMBER)
    guess = FailedTry(ctx.caller, ctx.now)  # a well-formed number that is nobody's
    if found is Verdict.BAD_CHECK_DIGIT:
        return _failed(call, ctx, Line("bad_check_digit"), digits, Outcome.WRONG_NUMBER, guess)
    amount = ctx.ledger.balance(digits, ctx.now)
    if amount is None:
        return _failed(call, ctx, Line("unknown_contract"), digits, Outcome.UNKNOWN_CONTRACT, guess)
    return _tell_balance(call, digits, amount, ctx)


def _failed(
    call: Call,
    ctx: Context,
    why: Line,
    digits: str,
    outcome: Outcome,
    failed_try: FailedTry | None = None,
) -> Reply:
    """Tell the caller why the number failed; end the call when tries or lockout run out.

    `failed_try`, when given, is returned to be recorded, and counts towards the lockout
    now: this very try may be the one that locks the caller out.
    """
    tries = call.contract_tries + 1
    if tries >= ctx.limits.contract_tries:
        reply = Reply((why, Line("too_many_tries")), outcome=Outcome.TOO_MANY_TRIES)
    elif _locked_out(ctx, pending=0 if failed_try is None else 1):
        reply = Reply((why, Line("locked_out")), outcome=Outcome.LOCKED_OUT)
    else:
        retry = replace(call, state=State.CONTRACT, prompts=1, contract_tries=tries)
        reply = replace(offer(retry, ctx, before=(why,)), outcome=outcome)
    return replace(reply, contract=digits, failed_try=failed_try)


def _locked_out(ctx: Context, pending: int = 0) -> bool:
    """Say whether the caller's failed tries, with `pending` not yet recorded, reach the limit."""
    since = ctx.now - ctx.limits.lockout_window
    failures = ctx.ledger.failures_since(ctx.caller, since) + pending
    return failures >= ctx.limits.lockout_failures


def _repeat_balance(call: Call, account: int, ctx: Context) -> Reply:
    """Tell the balance of the account told before again, as of now."""
    contract = ctx.ledger.contract_of(account)
    amount = None if contract is None else ctx.ledger.balance(contract, ctx.now)
    if contract is None or amount is None:  # the account vanished during the call
        return _again(call, ctx, Line("invalid_option"), Outcome.INVALID_KEY)
    return _tell_balance(call, contract, amount, ctx)


def _tell_balance(call: Call, contract: str, amount: Decimal, ctx: Context) -> Reply:
    account = ctx.ledger.account_of(contract)
    lines: tuple[Line, ...] = (
        Line("balance_intro", {"contract": digits_in_words(contract, call.lang)}),
        balance_line(amount, call.lang),
    )
    if amount > 0 and account is not None:
        charges = ctx.ledger.charges_since(account, ctx.now - WINDOW, ctx.now)
        lines += _days_left_line(days_left(amount, charges), call.lang)
    after = Call(State.AFTER_BALANCE, call.lang, 1, call.contract_tries, account)
    reply = offer(after, ctx, before=lines)
    return replace(reply, outcome=Outcome.BALANCE_TOLD, contract=contract)


def balance_line(amount: Decimal, lang: str) -> Line:
    """Choose how a balance is said: money on the account, nothing, or a debt.

    The words are the amount's magnitude; a debt is told by its phrase, not a minus.
    """
    if amount > 0:
        return Line("balance_positive", {"amount": amount_in_words(amount, lang)})
    if amount < 0:
        return Line("balance_debt", {"amount": amount_in_words(amount, lang)})
    return Line("balance_zero")


# --- self-service after the balance -------------------------------------------------------


def _days_left_line(days: int | None, lang: str) -> tuple[Line, ...]:
    """Say how long the balance lasts: nothing without an estimate."""
    if days is None:
        return ()
    if days == 0:
        return (Line("days_left_under_one"),)
    if days > DAYS_IN_A_YEAR:
        return (Line("days_left_over_year"),)
    return (Line("days_left", {"days": days_in_words(days, lang)}),)


def _date(moment: datetime, ctx: Context, lang: str) -> str:
    """Say the date of `moment` in the hotline's zone; the year only if not the call's."""
    local = moment.astimezone(ctx.zone).date()
    with_year = local.year != ctx.now.astimezone(ctx.zone).year
    return date_in_words(local, lang, with_year=with_year)


def _back_to_menu(
    call: Call, ctx: Context, line: Line, outcome: Outcome, before: tuple[Line, ...] = ()
) -> Reply:
    """Say `before` and `line`, then the after-balance menu again."""
    after = replace(call, state=State.AFTER_BALANCE, prompts=1)
    return replace(offer(after, ctx, before=(*before, line)), outcome=outcome)


def _last_payment(call: Call, account: int, ctx: Context) -> Reply:
    """Tell the latest payment posted at or before the call, or that there has been none."""
    payment = ctx.ledger.last_payment(account, ctx.now)
    if payment is None:
        line = Line("no_payments")
    else:
        amount = amount_in_words(payment.amount, call.lang)
        when = _date(payment.posted_at, ctx, call.lang)
        line = Line("last_payment", {"amount": amount, "date": when})
    return _back_to_menu(call, ctx, line, Outcome.LAST_PAYMENT_TOLD)


_REFUSED = {
    Refusal.RUNNING: Outcome.REFUSED_RUNNING,
    Refusal.RECENT: Outcome.REFUSED_RECENT,
    Refusal.NOT_NEEDED: Outcome.REFUSED_NOT_NEEDED,
    Refusal.OVER_MAX: Outcome.REFUSED_OVER_MAX,
}


def _refuse(
    call: Call, ctx: Context, why: Refusal, facts: PromiseFacts, before: tuple[Line, ...] = ()
) -> Reply:
    """Say which rule stops the promised payment, then the after-balance menu again."""
    lang = call.lang
    if why is Refusal.RUNNING and facts.running_until is not None:
        line = Line("promise_running", {"date": _date(facts.running_until, ctx, lang)})
    elif why is Refusal.RECENT and (allowed := next_allowed(facts)) is not None:
        line = Line("promise_recent", {"date": _date(allowed, ctx, lang)})
    elif why is Refusal.OVER_MAX:
        most = amount_in_words(ctx.limits.promise.max_rub, lang)
        line = Line("promise_over_max", {"amount": most})
    else:
        line = Line("promise_not_needed")
    return _back_to_menu(call, ctx, line, _REFUSED[why], before)


def _offer_promise(call: Call, ctx: Context, before: tuple[Line, ...]) -> Reply:
    """Offer a promised payment with its amount and end date, or say why there is none."""
    assert call.account is not None  # only `_act` enters this state, with an account
    facts = ctx.ledger.promise_facts(call.account, ctx.now)
    terms = judge(facts, ctx.now, ctx.limits.promise)
    if isinstance(terms, Refusal):  # the ledger changed while the offer was heard
        return _refuse(call, ctx, terms, facts, before)
    values = {
        "amount": amount_in_words(terms.amount, call.lang),
        "date": _date(terms.returns_at, ctx, call.lang),
    }
    gather = Gather(1, "", ctx.limits.menu_timeout_s)
    prompt = (Line("promise_offer", values),)
    return Reply(before, next=call, prompt=prompt, gather=gather, outcome=Outcome.PROMISE_OFFERED)


def _take_promise(call: Call, account: int, ctx: Context) -> Reply:
    """Connect the promised payment: the reply carries the write; or say why not."""
    facts = ctx.ledger.promise_facts(account, ctx.now)
    replayed = taken_by(facts, ctx.call_sid, ctx.now)
    if replayed is not None:  # this call took it already: answer as the first time
        return _promise_taken(call, ctx, replayed, facts.balance)
    terms = judge(facts, ctx.now, ctx.limits.promise)
    if isinstance(terms, Refusal):
        return _refuse(call, ctx, terms, facts)
    write = PromiseToWrite(account, terms.amount, ctx.now, terms.returns_at, ctx.call_sid)
    reply = _promise_taken(call, ctx, terms, facts.balance + terms.amount)
    return replace(reply, promise=write)


def _promise_taken(call: Call, ctx: Context, terms: Terms, new_balance: Decimal) -> Reply:
    lines = (
        Line("promise_taken", {"date": _date(terms.returns_at, ctx, call.lang)}),
        balance_line(new_balance, call.lang),
    )
    after = replace(call, state=State.AFTER_BALANCE, prompts=1)
    return replace(offer(after, ctx, before=lines), outcome=Outcome.PROMISE_TAKEN)


def promise_not_written(call: Call, ctx: Context) -> Reply:
    """Answer a confirmation whose write the database refused (another step took one first).

    Asked by the web layer after the refused write: the ledger now shows who took it.
    """
    assert call.account is not None
    facts = ctx.ledger.promise_facts(call.account, ctx.now)
    replayed = taken_by(facts, ctx.call_sid, ctx.now)
    if replayed is not None:
        return _promise_taken(call, ctx, replayed, facts.balance)
    terms = judge(facts, ctx.now, ctx.limits.promise)
    # The guard refused, so a promise is running or recent even if the entries lag behind.
    why = terms if isinstance(terms, Refusal) else Refusal.RECENT
    return _refuse(call, ctx, why, facts)
