"""The relays' positions in the event stream (``manage.py audit_relay``); an ordinary table, not append-only."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("audit_events", "0006_event_xid"),
    ]

    operations = [
        migrations.CreateModel(
            name="RelayPosition",
            fields=[
                ("name", models.CharField(max_length=100, primary_key=True, serialize=False, verbose_name="name")),
                ("snapshot", models.TextField(blank=True, default="", verbose_name="snapshot")),
                ("window_snapshot", models.TextField(blank=True, default="", verbose_name="window")),
                ("after_id", models.BigIntegerField(default=0, verbose_name="after id")),
                ("published", models.PositiveBigIntegerField(default=0, verbose_name="events published")),
                ("updated_at", models.DateTimeField(auto_now=True, verbose_name="updated at")),
            ],
            options={
                "verbose_name": "relay position",
                "verbose_name_plural": "relay positions",
            },
        ),
    ]
