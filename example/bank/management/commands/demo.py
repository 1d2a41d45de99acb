"""``manage.py demo``: the bank's story, told by audit_events.

Open an account, move money, read its history, delete it by accident, restore it
with its transfers, look at the past and roll it back. Every run opens a fresh
account, so it can be run again and again; it ends by (re)setting the ``admin``
superuser so the story can go on in the admin.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.utils import timezone

from audit_events import audit_context, history, restore, state_at
from audit_events.models import Event
from bank.models import Account, InsufficientFunds, Transfer

# Bookkeeping fields of TimeStampedModel: recorded, but they would drown the story.
_QUIET_FIELDS = {"id", "created", "modified"}


class Command(BaseCommand):
    help = "Tell the audit_events story on the example bank: history, undo-delete, time travel."

    def handle(self, *args: Any, **options: Any) -> None:
        bob = _staff_user("bob")
        carol = _staff_user("carol")

        self.title("The audit_events bank demo")
        self.say(f"Database: {connection.vendor} ({settings.DATABASES['default']['NAME']})")
        self.say("Account and Transfer are listed in AUDIT_EVENTS['MODELS']: every write to them is recorded.")

        self.step("1. Alice opens an account; Bob, a teller, takes a deposit; Alice withdraws some cash")
        with audit_context(actor=bob, reason="new customer at the counter"):
            account = Account.objects.create(owner="Alice")
        with audit_context(actor=bob, reason="cash deposit"):
            deposit = account.deposit("100.00")
        after_deposit = history(deposit).last().created_at  # the moment the deposit was recorded
        with audit_context(actor=bob, reason="cash withdrawal"):
            withdrawal = account.withdraw("30.00")
        pk = account.pk
        self.say(f"Account.objects.create(owner='Alice')  ->  {account}")
        self.say("account.deposit('100.00'); account.withdraw('30.00')")
        self.say(f"balance: {account.balance}")
        before = history(account).count()
        try:
            account.withdraw("500.00")
        except InsufficientFunds as error:
            self.say(f"account.withdraw('500.00') is refused: {error}")
        else:
            raise CommandError("the overdraft was accepted: the example bank is broken")
        after = history(account).count()
        self.say(f"events recorded for the account: {before} before the refused withdrawal, {after} after it")

        self.step(f"2. history(account): the events of {account}, oldest first")
        self.history_table(account)

        self.step(f'3. "Oops": {account} is deleted by accident, and its transfers with it (CASCADE)')
        with audit_context(actor=bob, reason="closing a duplicate account"):
            account.delete()
        delete_event = history(Account, pk).last()
        group = Event.objects.filter(operation=delete_event.operation)
        exists, left = Account.objects.filter(pk=pk).exists(), Transfer.objects.filter(account_id=pk).count()
        self.say(f"Account.objects.filter(pk={pk}).exists()  ->  {exists}")
        self.say(f"Transfer.objects.filter(account_id={pk}).count()  ->  {left}")
        self.say(f"the deletion was one operation of {group.count()} events ({_count_by_model(group)})")

        self.step(f"4. restore(Account, {pk}): the account comes back with everything deleted with it")
        with audit_context(actor=carol, reason="undo: wrong account closed"):  # Carol, a manager
            account = restore(Account, pk)
        transfers = list(Transfer.objects.filter(account=account))
        self.say(f"restored: {account}, balance {account.balance}, with {len(transfers)} transfers:")
        for transfer in transfers:
            self.say(f"  Transfer #{transfer.pk}: {transfer.amount:+} at {_time(transfer.date)}")

        self.step("5. state_at(Account, pk, at=moment): the account as it was, without writing anything")
        then = state_at(Account, pk, at=after_deposit)
        assert then is not None  # it existed then: we made it so in step 1
        self.say(f"moment: {after_deposit.isoformat()} (just after the deposit)")
        self.say(f"balance at that moment: {then.balance}")
        self.say(f"balance now: {Account.objects.get(pk=pk).balance}")

        self.step("6. The withdrawal was keyed in by mistake: cancel it and roll the account back")
        with audit_context(actor=carol, reason="withdrawal keyed in by mistake"):
            Transfer.objects.get(pk=withdrawal.pk).delete()
            account = restore(Account, pk, at=after_deposit)
        self.say(f"restore(Account, {pk}, at=moment)  ->  {account}, balance {account.balance}")
        self.say(f"transfers: {', '.join(f'{t.amount:+}' for t in Transfer.objects.filter(account=account))}")

        self.step("7. history(account) again: nothing was edited, the corrections are new events")
        self.history_table(account)

        self.step("Go on in the admin")
        users = get_user_model()
        admin = users.objects.filter(username="admin").first() or users(username="admin")
        admin.is_staff = admin.is_superuser = admin.is_active = True
        admin.set_password("admin")
        admin.save()
        self.say("superuser: admin / password: admin (reset by every run of this demo)")
        self.say("start the server:  cd example && ../.venv/bin/python manage.py runserver")
        self.say("then open http://127.0.0.1:8000/admin/, log in as admin / admin,")
        self.say("delete an account (its transfers go with it) and undo the deletion from the admin.")

    # --- printing ---------------------------------------------------------

    def title(self, text: str) -> None:
        self.stdout.write(self.style.MIGRATE_HEADING(f"{text}\n{'=' * len(text)}"))

    def step(self, text: str) -> None:
        self.stdout.write("")
        self.stdout.write(self.style.MIGRATE_HEADING(text))

    def say(self, text: str) -> None:
        self.stdout.write(f"   {text}")

    def history_table(self, account: Account) -> None:
        rows = [("v", f"time ({timezone.get_current_timezone_name()})", "action", "changes", "by", "why")]
        for event in history(Account, account.pk):
            rows.append(
                (
                    str(event.version),
                    _time(event.created_at),
                    event.action,
                    _changes(event),
                    event.actor_repr or "-",
                    str(event.context.get("reason", "-")),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for number, row in enumerate(rows):
            line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            self.say(self.style.SQL_FIELD(line) if number == 0 else line)


def _staff_user(username: str) -> Any:
    """A teller or manager the events can name (they cannot log in)."""
    user, created = get_user_model().objects.get_or_create(username=username)
    if created:
        user.set_unusable_password()
        user.save()
    return user


def _time(moment: datetime.datetime) -> str:
    return timezone.localtime(moment).strftime("%H:%M:%S.%f")[:-3]


def _changes(event: Event) -> str:
    """``balance: 100.00 -> 70.00``; for a row written whole (create, restore), its values."""
    if event.changes:
        return ", ".join(
            f"{name}: {_value(old)} -> {_value(new)}"
            for name, (old, new) in event.changes.items()
            if name not in _QUIET_FIELDS
        )
    if event.state and event.action != "delete":
        return ", ".join(f"{name}={_value(value)}" for name, value in event.state.items() if name not in _QUIET_FIELDS)
    return ""


def _value(value: Any) -> str:
    return "-" if value is None else str(value)


def _count_by_model(events: Any) -> str:
    counts: dict[str, int] = {}
    for event in events.select_related("content_type"):
        counts[event.content_type.model] = counts.get(event.content_type.model, 0) + 1
    return ", ".join(f"{n} {model}" for model, n in counts.items())
