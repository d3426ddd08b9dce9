import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    """An item's and a pin's link to their job keep no foreign-key constraint: their checks at
    commit, one per item and one per pin, were a third of the database's time for a
    million-file request, and guarded nothing the writes do not (see the fields' comments:
    both rows are written only where their job is new or row-locked, never move to another
    job, and are deleted with it through the ORM)."""

    dependencies = [
        ("staging", "0017_tape_recall"),
    ]

    operations = [
        migrations.AlterField(
            model_name="item",
            name="job",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="items",
                to="staging.job",
            ),
        ),
        migrations.AlterField(
            model_name="pin",
            name="job",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="pins",
                to="staging.job",
            ),
        ),
    ]
