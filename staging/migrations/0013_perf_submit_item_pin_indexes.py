import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    """Items and pins are written once per file of a request (a million for the largest), and
    each index is one more write per row. A job's items in one state are indexed in id order
    (the cursor pages of its items read an index range instead of sorting every item in that
    state); the single-column indexes on item.job, item.subjob, pin.job and pin.store go, as
    item_job_status_id, item_subjob_status, unique_pin_per_job_path and pin_store_path lead
    with those columns. The new index is built before the old ones go."""

    dependencies = [
        ("staging", "0012_dispatch"),
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
        migrations.AlterField(
            model_name="item",
            name="job",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="items",
                to="staging.job",
            ),
        ),
        migrations.AlterField(
            model_name="item",
            name="subjob",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="items",
                to="staging.subjob",
            ),
        ),
        migrations.AlterField(
            model_name="pin",
            name="job",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="pins",
                to="staging.job",
            ),
        ),
        migrations.AlterField(
            model_name="pin",
            name="store",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="pins",
                to="staging.store",
            ),
        ),
    ]
