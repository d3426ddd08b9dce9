import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    """Fewer checks and index writes per file of a request (a million for the largest). The
    item's link to its catalogue entry and the pin's to its store keep no foreign-key
    constraint: their checks at commit took a key-share lock on every catalogue row a request
    names and looked the store up once per pin, guarding against deletions that happen only
    through the ORM, which still cascades them. The item's two indexes on file_id (a plain
    one and a pattern one nothing uses) become one, built before the old ones go."""

    dependencies = [
        ("staging", "0015_webhooks"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="item",
            index=models.Index(fields=["file"], name="item_file"),
        ),
        migrations.AlterField(
            model_name="item",
            name="file",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                to="staging.file",
            ),
        ),
        migrations.AlterField(
            model_name="pin",
            name="store",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="pins",
                to="staging.store",
            ),
        ),
    ]
