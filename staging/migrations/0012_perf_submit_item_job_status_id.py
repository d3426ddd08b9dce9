from django.db import migrations, models


class Migration(migrations.Migration):
    """A job's items in one state, in id order: the cursor pages of a million-file job's items
    read an index range instead of sorting every item in that state. The new index is built
    before the old one goes, so the lookup by job and status always has one."""

    dependencies = [
        ("staging", "0011_engine_states_subjob_failures"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="item",
            index=models.Index(fields=["job", "status", "id"], name="item_job_status_id"),
        ),
        migrations.RemoveIndex(
            model_name="item",
            name="item_job_status",
        ),
    ]
