"""Accounts and the transfers that move their balance.

Every write to both models is recorded by audit_events (see ``AUDIT_EVENTS`` in
the settings): nothing here knows about auditing.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models, transaction
from django.utils import timezone
from model_utils.models import TimeStampedModel

CENT = Decimal("0.01")


class InsufficientFunds(Exception):
    """A withdrawal larger than the balance; nothing was written."""


class Account(TimeStampedModel):
    owner = models.CharField(max_length=100)
    balance = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0.00"))

    class Meta:
        ordering = ("id",)

    def __str__(self) -> str:
        return f"Account #{self.pk} ({self.owner})"

    def deposit(self, amount: Decimal | int | str) -> Transfer:
        """Add ``amount`` (positive) to the balance, as one transfer."""
        return self._move(_positive(amount))

    def withdraw(self, amount: Decimal | int | str) -> Transfer:
        """Take ``amount`` (positive) from the balance; raises :class:`InsufficientFunds` on overdraft."""
        return self._move(-_positive(amount))

    def _move(self, amount: Decimal) -> Transfer:
        with transaction.atomic():
            # The balance is read locked, so two tellers cannot both spend the same money.
            account = Account.objects.select_for_update().get(pk=self.pk)
            if account.balance + amount < 0:
                raise InsufficientFunds(
                    f"{account}: cannot withdraw {-amount}, the balance is only {account.balance}. Nothing was written."
                )
            account.balance += amount
            account.save(update_fields=["balance"])
            transfer = Transfer.objects.create(account=account, amount=amount)
        self.balance, self.modified = account.balance, account.modified
        return transfer


class Transfer(models.Model):
    """Money in (positive amount) or out (negative) of one account."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="transfers")
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    date = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("date", "id")

    def __str__(self) -> str:
        return f"{self.amount:+} on {self.account_id} at {self.date:%Y-%m-%d %H:%M}"


def _positive(amount: Decimal | int | str) -> Decimal:
    try:
        value = Decimal(amount)
    except ArithmeticError:
        value = Decimal("NaN")
    if not value.is_finite() or value <= 0:
        raise ValueError(f"amount must be a positive number, not {amount!r}")
    return value.quantize(CENT)
