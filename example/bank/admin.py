"""The bank's admin: each account's history, restore a version, and undo a deleted account with its transfers."""

from __future__ import annotations

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


@admin.register(Transfer)
class TransferAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ("id", "account", "amount", "date")
    list_select_related = ("account",)
    date_hierarchy = "date"
