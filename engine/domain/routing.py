"""The router: who hears a per-fact message, and when. Alertmanager's semantics, on event time.

The rules say what happened (one message per fact); the router decides how each reaches a person:
`send` (now, on its own), `digest` (listed in the recipient's next FeedbackDigest of its route's group) or
`held` (silenced, inhibited or over a send route's rate limit: recorded for systems, sent to nobody).

- The routing tree (routing.json) picks a route by matchers on the message's labels; a route groups messages
  by `group_by` (always the recipient). A digest route flushes a group `group_wait` after its first pending
  message, then at most every `group_interval`; a send route sends at once, at most once per
  `repeat_interval` per group, and the rest overflow (to the parent's digest, or held).
- Inhibition: while a source (a systemic escalation for a department and root cause) is open, targets with
  equal labels (that pair's per-provider escalations) are held.
- Silences hold what they match between their start and end.

It is pure: the clock is passed in (the stage's watermark), state is plain data with a changes log, ties are
broken by key, so the same messages in the same order give the same output.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from engine.domain import messages
from engine.domain.routing_config import InhibitRule, Route, RoutingConfig, matches
from schemas import EscalationRaised, FeedbackDigest, FeedbackNotification, FeedbackSilence, Recipient
from schemas.outbound import Delivery, DigestAudience, DigestReason

Message = FeedbackNotification | EscalationRaised
Routed = FeedbackNotification | EscalationRaised | FeedbackDigest
Labels = dict[str, tuple[str, ...]]
Reason = Literal["first_notification", "new_alerts", "resolved", "repeat_elapsed", "do_not_notify"]


# ---- the decision -----------------------------------------------------------------------------------------


def due_at(route: Route, first_pending_at: datetime, last_notified_at: datetime | None) -> datetime:
    """When a group with pending messages may notify next."""
    wait = first_pending_at + route.group_wait
    if last_notified_at is None:
        return wait
    spacing = route.repeat_interval if route.delivery == "send" else route.group_interval
    return max(wait, last_notified_at + spacing)


def decide(
    route: Route,
    pending_kinds: Sequence[str],
    first_pending_at: datetime | None,
    last_notified_at: datetime | None,
    now: datetime,
) -> Reason:
    """Alertmanager's notification-log decision for one group: notify now, and why, or do not notify.

    For a send route the pending message is the one being routed; for a digest route, what the group holds."""
    if not pending_kinds or first_pending_at is None:
        return "do_not_notify"
    if now < due_at(route, first_pending_at, last_notified_at):
        return "do_not_notify"
    if last_notified_at is not None and route.delivery == "send":
        return "repeat_elapsed"
    return _flush_reason(pending_kinds, last_notified_at)


def _flush_reason(pending_kinds: Sequence[str], last_notified_at: datetime | None) -> Reason:
    """Why a group that is due notifies (for a digest group, decide() once the due time has come)."""
    if last_notified_at is None:
        return "first_notification"
    if all(kind == "pattern_resolved" for kind in pending_kinds):
        return "resolved"
    return "new_alerts"


# ---- state ------------------------------------------------------------------------------------------------


@dataclass
class GroupLog:
    """One group of one route: what waits for the next digest, and when it last notified."""

    key: str
    route: str
    recipient: str  # the recipient label: provider:<npi>, team:<id>, role:<role>[@<department>]
    audience: str
    pending: list[Message] = field(default_factory=list)
    first_pending_at: datetime | None = None
    last_notified_at: datetime | None = None
    next_flush_at: datetime | None = None


@dataclass
class Silence:
    silence_id: str
    matchers: dict[str, list[str]]
    starts_at: datetime
    ends_at: datetime
    author: str
    reason: str

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at


@dataclass
class Inhibition:
    key: str
    rule: str
    opened_at: datetime


@dataclass
class RoutingChanges:
    """What routing changed, for the stage to persist (None in `inhibitions`: closed, delete it)."""

    groups: dict[str, GroupLog] = field(default_factory=dict)
    silences: dict[str, Silence] = field(default_factory=dict)
    inhibitions: dict[str, Inhibition | None] = field(default_factory=dict)
    routed: dict[str, tuple[Delivery, str | None]] = field(default_factory=dict)


@dataclass
class RoutingState:
    clock: datetime | None = None
    groups: dict[str, GroupLog] = field(default_factory=dict)
    silences: dict[str, Silence] = field(default_factory=dict)
    inhibitions: dict[str, Inhibition] = field(default_factory=dict)
    routed: dict[str, tuple[Delivery, str | None]] = field(default_factory=dict)  # message id -> decision
    changes: RoutingChanges = field(default_factory=RoutingChanges)

    def save_group(self, group: GroupLog) -> None:
        self.groups[group.key] = group
        self.changes.groups[group.key] = group

    def save_silence(self, silence: Silence) -> None:
        self.silences[silence.silence_id] = silence
        self.changes.silences[silence.silence_id] = silence

    def open_inhibition(self, inhibition: Inhibition) -> None:
        if inhibition.key not in self.inhibitions:
            self.inhibitions[inhibition.key] = inhibition
            self.changes.inhibitions[inhibition.key] = inhibition

    def close_inhibition(self, key: str) -> None:
        if self.inhibitions.pop(key, None) is not None:
            self.changes.inhibitions[key] = None

    def record_routed(self, message_id: str, delivery: Delivery, reason: str | None) -> None:
        self.routed[message_id] = (delivery, reason)
        self.changes.routed[message_id] = (delivery, reason)

    def take_changes(self) -> RoutingChanges:
        changes, self.changes = self.changes, RoutingChanges()
        return changes


# ---- the router -------------------------------------------------------------------------------------------


def message_id(message: Routed) -> str:
    if isinstance(message, FeedbackNotification):
        return message.notification_id
    if isinstance(message, EscalationRaised):
        return message.escalation_id
    return message.digest_id


class Router:
    def __init__(self, config: RoutingConfig | None = None) -> None:
        self.config = config or RoutingConfig.load()

    # -- entry points

    def route(self, message: Message, state: RoutingState, now: datetime) -> list[Routed]:
        """The message with its delivery decided, after any digest that fell due before it."""
        out = self.advance(now, state)
        now = state.clock or now
        known = state.routed.get(message_id(message))
        if known is not None:  # redelivered: same decision, and it is not grouped twice
            return [*out, message.model_copy(update={"delivery": known[0], "delivery_reason": known[1]})]
        labels = self.labels(message)
        self._open_sources(labels, state, now)
        delivery, reason = self._decide_delivery(message, labels, state, now)
        state.record_routed(message_id(message), delivery, reason)
        out.append(message.model_copy(update={"delivery": delivery, "delivery_reason": reason}))
        out += self.advance(now, state)  # a digest route with no wait may be due at once
        return out

    def advance(self, to: datetime, state: RoutingState) -> list[Routed]:
        """Move the clock forward (never back) and flush every group due by then, in due order (ties by key)."""
        target = to if state.clock is None or to > state.clock else state.clock
        out: list[Routed] = []
        while True:
            due = [g for g in state.groups.values() if g.next_flush_at is not None and g.next_flush_at <= target]
            if not due:
                break
            group = min(due, key=lambda g: (g.next_flush_at, g.key))
            assert group.next_flush_at is not None
            out.append(self._flush(group, group.next_flush_at, state))
        state.clock = target
        return out

    def apply_silence(self, event: FeedbackSilence, state: RoutingState) -> None:
        """`set` creates or replaces the silence; `expire` ends it early (never later than it was going to)."""
        existing = state.silences.get(event.silence_id)
        if event.action == "expire":
            if existing is not None:
                end = min(existing.ends_at, event.ends_at or event.occurred_at)
                state.save_silence(Silence(**{**existing.__dict__, "ends_at": end}))
            return
        assert event.matchers is not None and event.ends_at is not None  # the contract requires them for `set`
        found = event.matchers.model_dump(mode="json")
        state.save_silence(
            Silence(
                silence_id=event.silence_id,
                matchers={label: sorted(values) for label, values in found.items() if values},
                starts_at=event.starts_at or event.occurred_at,
                ends_at=event.ends_at,
                author=event.author,
                reason=event.reason,
            )
        )

    def systemic_opened(self, department: str, root_cause: str, now: datetime, state: RoutingState) -> None:
        self._open_sources(_systemic_labels(department, root_cause), state, now)

    def systemic_closed(self, department: str, root_cause: str, now: datetime, state: RoutingState) -> None:
        labels = _systemic_labels(department, root_cause)
        for rule in self.config.inhibit_rules:
            if matches(rule.source, labels):
                key = _inhibition_key(rule, labels)
                if key is not None:
                    state.close_inhibition(key)

    # -- labels

    def labels(self, message: Message) -> Labels:
        """What matchers, group_by and silences see of a message. Multi-valued labels list every value."""
        if isinstance(message, FeedbackNotification):
            p = message.pattern
            return {
                "stream": ("notification",),
                "kind": (message.kind,),
                "audience": (message.audience,),
                "recipient": (f"{message.recipient.type}:{message.recipient.id}",),
                "root_cause": (p.root_cause.value,),
                "category": (self.config.category[p.root_cause],),
                "owner": (self.config.owner[p.root_cause],),
                "department": (p.department,),
                "provider_npi": (p.provider_npi,),
                "procedure_code": (p.procedure_code,),
                "pattern_id": (message.pattern_id,),
                "payer_id": tuple(sorted({e.payer_id for e in message.evidence if e.payer_id})),
                "scope": ("pattern",),
            }
        target = message.target
        role: str = target.role
        if self.config.roles[role].scope == "department":
            role = f"{role}@{target.department}"
        return {
            "stream": ("escalation",),
            "kind": ("escalation",),
            "audience": ("leadership",),
            "recipient": (f"role:{role}",),
            "root_cause": (message.root_cause.value,),
            "category": (self.config.category[message.root_cause],),
            "owner": (target.team,),
            "department": (message.department,),
            "provider_npi": tuple(message.facts.providers),
            "procedure_code": (message.procedure_code,) if message.procedure_code else (),
            "pattern_id": (message.pattern_id,) if message.pattern_id else (),
            "payer_id": tuple(message.facts.payer_ids),
            "level": (str(message.level),),
            "reason": (message.reason,),
            "scope": ("pattern",) if message.pattern_id else ("systemic",),
        }

    def routes_for(self, labels: Labels) -> list[Route]:
        """The routes a message takes: depth first, the first matching child wins unless it says `continue`."""
        found: list[Route] = []

        def walk(node: Route) -> bool:
            matched_child = False
            for child in node.routes:
                if child.matches(labels) and walk(child):
                    matched_child = True
                    if not child.continue_:
                        break
            if not matched_child:
                found.append(node)
            return True

        walk(self.config.route)
        return found

    # -- inside

    def _decide_delivery(
        self, message: Message, labels: Labels, state: RoutingState, now: datetime
    ) -> tuple[Delivery, str | None]:
        for silence in sorted(state.silences.values(), key=lambda s: s.silence_id):
            if silence.active(now) and matches({k: frozenset(v) for k, v in silence.matchers.items()}, labels):
                return "held", f"silence:{silence.silence_id}"
        for rule in self.config.inhibit_rules:
            if matches(rule.target, labels) and not matches(rule.source, labels):
                key = _inhibition_key(rule, labels)
                if key is not None and key in state.inhibitions:
                    return "held", f"inhibited:{rule.name}"
        decisions = [self._take_route(route, message, labels, state, now) for route in self.routes_for(labels)]
        for wanted in ("send", "digest", "held"):
            for delivery, reason in decisions:
                if delivery == wanted:
                    return delivery, reason
        raise AssertionError("the root route always matches")

    def _take_route(
        self, route: Route, message: Message, labels: Labels, state: RoutingState, now: datetime
    ) -> tuple[Delivery, str | None]:
        group = self._group(route, labels, state)
        if route.delivery == "digest":
            self._enqueue(group, route, message, state, now)
            return "digest", f"digest:{route.name}"
        kind = labels["kind"][0]
        if decide(route, [kind], now, group.last_notified_at, now) != "do_not_notify":
            group.last_notified_at = now
            state.save_group(group)
            return "send", None
        if route.overflow == "held" or route.parent is None:
            return "held", f"rate_limited:{route.name}"
        parent = self.config.routes_by_name[route.parent]
        self._enqueue(self._group(parent, labels, state), parent, message, state, now)
        return "digest", f"digest:{parent.name}"

    def _group(self, route: Route, labels: Labels, state: RoutingState) -> GroupLog:
        values = ["|".join(labels.get(label, ())) for label in route.group_by]
        key = "/".join([route.name, *values])
        existing = state.groups.get(key)
        if existing is not None:
            return existing
        return GroupLog(key=key, route=route.name, recipient=labels["recipient"][0], audience=labels["audience"][0])

    def _enqueue(self, group: GroupLog, route: Route, message: Message, state: RoutingState, now: datetime) -> None:
        if not group.pending:
            group.first_pending_at = now
        group.pending.append(message)
        assert group.first_pending_at is not None
        group.next_flush_at = due_at(route, group.first_pending_at, group.last_notified_at)
        state.save_group(group)

    def _flush(self, group: GroupLog, at: datetime, state: RoutingState) -> FeedbackDigest:
        """The group's digest, at the time it was scheduled for when its first message came. An edit to
        routing.json since (a wait changed, the route renamed or removed) changes what is routed after it, not a
        digest already due: checking that against the new configuration would fail every pass from then on."""
        kinds = [m.kind if isinstance(m, FeedbackNotification) else "escalation" for m in group.pending]
        reason = _flush_reason(kinds, group.last_notified_at)
        assert group.first_pending_at is not None
        window_start = group.last_notified_at or group.first_pending_at
        kind, _, recipient_id = group.recipient.partition(":")
        digest = messages.digest(
            route=group.route,
            audience=_digest_audience(group.audience),
            recipient=Recipient(type=kind, id=recipient_id),
            reason=_digest_reason(reason),
            items=group.pending,
            window_start=window_start,
            window_end=at,
        )
        group.pending = []
        group.first_pending_at = None
        group.last_notified_at = at
        group.next_flush_at = None
        state.save_group(group)
        return digest

    def _open_sources(self, labels: Labels, state: RoutingState, now: datetime) -> None:
        for rule in self.config.inhibit_rules:
            if matches(rule.source, labels):
                key = _inhibition_key(rule, labels)
                if key is not None:
                    state.open_inhibition(Inhibition(key=key, rule=rule.name, opened_at=now))


def _systemic_labels(department: str, root_cause: str) -> Labels:
    return {
        "stream": ("escalation",),
        "kind": ("escalation",),
        "scope": ("systemic",),
        "reason": ("systemic",),
        "department": (department,),
        "root_cause": (root_cause,),
    }


def _inhibition_key(rule: InhibitRule, labels: Labels) -> str | None:
    """The inhibition's identity: its rule and the values of its `equal` labels (None if one is missing)."""
    parts = [rule.name]
    for label in rule.equal:
        values = labels.get(label, ())
        if len(values) != 1:
            return None
        parts.append(f"{label}={values[0]}")
    return "|".join(parts)


def _digest_audience(audience: str) -> DigestAudience:
    return "clinician" if audience == "clinician" else "billing" if audience == "billing" else "leadership"


def _digest_reason(reason: Reason) -> DigestReason:
    return "resolved" if reason == "resolved" else "new_alerts" if reason == "new_alerts" else "first_notification"


def drain_horizon(config: RoutingConfig) -> timedelta:
    """Long enough for every group with pending messages to flush once more."""
    longest = timedelta(0)

    def walk(node: Route) -> None:
        nonlocal longest
        longest = max(longest, node.group_wait + node.group_interval)
        for child in node.routes:
            walk(child)

    walk(config.route)
    return longest


def route_stream(
    stream: Iterable[Message], config: RoutingConfig | None = None, until: datetime | None = None
) -> list[Routed]:
    """Route per-fact messages in (created_at, id) order, as the stage would, then flush what is still pending.

    The systemic escalations in the stream open their own inhibitions (they are the inhibition rules' source);
    the stage may also call systemic_opened/closed when it learns a pair's state otherwise."""
    router = Router(config)
    state = RoutingState()
    ordered = sorted(stream, key=lambda m: (m.created_at, message_id(m)))
    out: list[Routed] = []
    for message in ordered:
        out += router.route(message, state, message.created_at)
    if until is None and ordered:
        until = ordered[-1].created_at + drain_horizon(router.config)
    if until is not None:
        out += router.advance(until, state)
    return out
