from django.db import migrations


class Migration(migrations.Migration):
    """The item's index on its catalogue file goes: one more write per file of a request, kept
    for the admin's search by catalogue id alone, which now finds the file's path first and
    the items by the path index (staging.selectors_admin.items_of_file)."""

    dependencies = [
        ("staging", "0018_perf_submit_job_links"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="item",
            name="item_file",
        ),
    ]
