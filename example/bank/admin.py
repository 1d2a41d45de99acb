"""The bank's admin: each account's history, restore a version, and undo a deleted account with its transfers.

What it shows of audit_events' admin (see docs/admin.rst):

* History (the object's "History" button) with values as the admin shows them,
  and "Restore this version" with its preview. ``balance`` is read-only here,
  so a restore keeps the live balance and the preview says so: money moves
  through transfers only, and a teller cannot set it by restoring an old version.
* "Deleted accounts" next to "Add", and "Undo delete" with its preview: the
  account comes back with its transfers, if the user may add both.
* The read-only "Audit events" admin, for auditors (``audit_events.view_event``).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin

from audit_events.admin import AuditedAdminMixin

from .models import Account, Transfer


class TransferInline(admin.TabularInline):
    model = Transfer
    extra = 0
    fields = ("amount", "date")


@admin.register(Account)
class AccountAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("id", "owner", "balance", "modified")
    search_fields = ("owner",)
    readonly_fields = ("balance",)  # money moves through transfers (Account.deposit / withdraw)
    inlines = [TransferInline]

    def display_recorded_value(self, field: Any, value: Any) -> str | None:
        """The audit pages show amounts with their currency (the hook documented in docs/admin.rst)."""
        if field.name == "balance" and value is not None:
            return f"{value} €"
        return super().display_recorded_value(field, value)


@admin.register(Transfer)
class TransferAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("id", "account", "amount", "date")
    list_select_related = ("account",)
    date_hierarchy = "date"
