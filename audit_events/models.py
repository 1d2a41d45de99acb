"""The append-only event table."""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils.translation import gettext_lazy as _

from .exceptions import AppendOnlyError


class Action(models.TextChoices):
    CREATE = "create", _("create")
    UPDATE = "update", _("update")
    DELETE = "delete", _("delete")
    RESTORE = "restore", _("restore")
    SNAPSHOT = "snapshot", _("snapshot")
    SYNC = "sync", _("sync")


_APPEND_ONLY = "audit events are append-only: record a correction as a new event instead"


class EventQuerySet(models.QuerySet["Event"]):
    def update(self, **kwargs: Any) -> int:
        raise AppendOnlyError(_APPEND_ONLY)

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError(_APPEND_ONLY)

    update.queryset_only = True  # type: ignore[attr-defined]
    delete.queryset_only = True  # type: ignore[attr-defined]


class Event(models.Model):
    """One recorded write to one row of a registered model."""

    id = models.BigAutoField(primary_key=True)
    # No index of its own: the (content_type, ...) indexes below lead with it.
    content_type = models.ForeignKey(
        ContentType, on_delete=models.PROTECT, related_name="+", verbose_name=_("model"), db_index=False
    )
    # Text of any length: a model's key may be a TextField or a long CharField (migration 0005).
    object_pk = models.TextField(_("object pk"))
    version = models.PositiveIntegerField(_("version"))
    action = models.CharField(_("action"), max_length=16, choices=Action.choices)
    changes = models.JSONField(_("changes"), default=dict, blank=True)
    state = models.JSONField(_("state"), null=True, blank=True)
    created_at = models.DateTimeField(_("time"))
    operation = models.UUIDField(_("operation"))
    # NULL, not "", when no actor: "no one" must not look like an id.
    actor_id = models.CharField(_("actor id"), max_length=255, null=True, blank=True)  # noqa: DJ001
    actor_repr = models.CharField(_("actor"), max_length=255, blank=True, default="")
    context = models.JSONField(_("context"), default=dict, blank=True)
    hash = models.CharField(_("hash"), max_length=64)

    objects: ClassVar[EventQuerySet] = EventQuerySet.as_manager()  # type: ignore[assignment]

    class Meta:
        verbose_name = _("audit event")
        verbose_name_plural = _("audit events")
        ordering = ("id",)
        # Each index costs every event INSERT an entry (docs/performance.rst, "The event table's indexes"):
        # only those a reader needs are here, each with its readers. The primary key (id) serves the
        # Event admin's newest-first pages (unfiltered, by create/update, by a common model, by date), an
        # event's page, the stream's and relay's pages, the date hierarchy's first and last event.
        constraints = [
            # The row's latest event, looked up once per event by the event INSERT (its LATERAL
            # subquery, ORDER BY version DESC LIMIT 1); a row's history (history(), replay, the
            # history page, verify); its events up to a time (state_at, restore(at=...), diff: the
            # row's few events in version order, the time filtered on them); "written since"
            # (deleted(), the deletion filter, undo); the admin's search by a row's key.
            models.UniqueConstraint(
                fields=("content_type", "object_pk", "version"),
                name="audit_events_row_version",
            ),
        ]
        indexes = [
            # An operation's events: undo delete, restore's group, audit_restore, the admin's
            # "?operation=" link from every event.
            models.Index(fields=("operation",), name="audit_events_operation"),
            # A time range: the admin's date hierarchy and date filters, audit_verify --since,
            # as_of(). On PostgreSQL a BRIN index under this name (migration 0009): events come in
            # time order, so a few bytes per 128 pages instead of an entry per event.
            models.Index(fields=("created_at",), name="audit_events_created"),
            # The rarer actions (delete, restore, snapshot, sync), newest first: the admin's action
            # and deletion filters, deleted(). create and update are most events: the primary key.
            models.Index(
                fields=("id",),
                name="audit_events_rare_action",
                condition=~models.Q(action__in=[Action.CREATE, Action.UPDATE]),
            ),
            # One model's events, newest first: the admin's model filter and its date hierarchy (a
            # model with few events among many; a frequent one walks the primary key).
            models.Index(fields=("content_type", "id"), name="audit_events_model"),
            # The admin's search by actor (few distinct actors: deduplicated, a few bytes per event).
            models.Index(fields=("actor_id",), name="audit_events_actor"),
        ]

    def __str__(self) -> str:
        return f"{self.content_type.app_label}.{self.content_type.model} {self.object_pk} v{self.version} {self.action}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError(_APPEND_ONLY)
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError(_APPEND_ONLY)

    @property
    def model_class(self) -> type[models.Model] | None:
        return self.content_type.model_class()


class UnrecordedWrite(models.Model):
    """A note left by ``audit_events.unrecorded(reason)``: rows of this model were written unrecorded.

    ``audit_verify`` names the note in the drift it finds on the model's rows
    after their last event, and ``--repair`` records them with its reason.
    """

    content_type = models.ForeignKey(
        ContentType, on_delete=models.PROTECT, related_name="+", verbose_name=_("model"), db_index=False
    )
    reason = models.TextField(_("reason"))
    actor_id = models.CharField(_("actor id"), max_length=255, null=True, blank=True)  # noqa: DJ001
    actor_repr = models.CharField(_("actor"), max_length=255, blank=True, default="")
    context = models.JSONField(_("context"), default=dict, blank=True)
    started_at = models.DateTimeField(_("started at"))
    ended_at = models.DateTimeField(_("ended at"))

    class Meta:
        verbose_name = _("unrecorded write")
        verbose_name_plural = _("unrecorded writes")
        # audit_verify's question: the latest note of a model that ended after a row's last event.
        indexes = [models.Index(fields=("content_type", "ended_at"), name="audit_events_unrecorded")]

    def __str__(self) -> str:
        who = self.actor_repr or "no one"
        return f"{self.reason!r} by {who}, {self.started_at.isoformat()} to {self.ended_at.isoformat()}"


class RelayPosition(models.Model):
    """How far one relay (``manage.py audit_relay --name``) has published the event stream.

    Updated only after the broker acknowledged the events up to it
    (``audit_events.stream.Position``): a relay that restarts resumes here,
    publishing again at most the batch it had not recorded yet.
    """

    name = models.CharField(_("name"), max_length=100, primary_key=True)
    snapshot = models.TextField(_("snapshot"), blank=True, default="")
    # Not "window": a reserved word in PostgreSQL, which raw SQL would have to quote.
    window_snapshot = models.TextField(_("window"), blank=True, default="")
    after_id = models.BigIntegerField(_("after id"), default=0)
    published = models.PositiveBigIntegerField(_("events published"), default=0)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("relay position")
        verbose_name_plural = _("relay positions")

    def __str__(self) -> str:
        return f"relay {self.name}: {self.published} events published"
