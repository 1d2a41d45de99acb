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
        constraints = [
            # Also the index behind "history of one row", oldest first.
            models.UniqueConstraint(
                fields=("content_type", "object_pk", "version"),
                name="audit_events_row_version",
            ),
        ]
        indexes = [
            # "events of one row up to time T" (state_at, restore at=...).
            models.Index(
                fields=("content_type", "object_pk", "created_at"),
                name="audit_events_row_time",
            ),
            models.Index(fields=("operation",), name="audit_events_operation"),
            models.Index(fields=("created_at",), name="audit_events_created"),
            models.Index(fields=("action", "id"), name="audit_events_action"),
            models.Index(fields=("content_type", "id"), name="audit_events_model"),
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
